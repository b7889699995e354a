"""The tf.distribute strategy a run trains under (--strategy), and where this worker stands in it."""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tensorflow as tf

from tf_mlm.options import check_tf_config


def make_strategy(name: str, worker_timeout: int = 300) -> tf.distribute.Strategy:
    """--strategy as tf.distribute: auto is mirrored over several GPUs, else the default (one device)."""
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    check_tf_config(os.environ.get("TF_CONFIG"))
    # TensorFlow waits for every worker of TF_CONFIG without a limit, in C++ holding the GIL (TF 2.21), so no
    # Python thread or signal can end it; faulthandler's watchdog needs no GIL: it exits with 1 after the
    # timeout, and a small process says why on the console just before.
    cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
    message = (
        f"Error: TF_CONFIG: not every worker of {cluster} answered within {worker_timeout} s "
        "(--worker-timeout); start the same command on each of them"
    )
    crash_log = open(Path(tempfile.gettempdir()) / f"mlm-toolkit-workers-{os.getpid()}.log", "w")  # noqa: SIM115
    faulthandler.dump_traceback_later(worker_timeout + 1, exit=True, file=crash_log)
    script = "import sys, time; time.sleep(float(sys.argv[1])); print(sys.argv[2], file=sys.stderr)"
    announcer = subprocess.Popen([sys.executable, "-c", script, str(worker_timeout), message])
    try:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    finally:
        faulthandler.cancel_dump_traceback_later()
        announcer.kill()
        crash_log.close()
        Path(crash_log.name).unlink(missing_ok=True)


def worker_place(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this worker's index, workers): the shard of a stream each worker of a multi-worker run reads."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0, 1
    return resolver.task_id, len(resolver.cluster_spec().as_dict().get("worker", [None]))


def device_names(strategy: tf.distribute.Strategy) -> str:
    try:
        return ", ".join(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy runs on TF's default device
        gpus = tf.config.list_logical_devices("GPU")
        return gpus[0].name if gpus else "/device:CPU:0"
