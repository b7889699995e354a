"""Keras-first TensorFlow masked-LM fine-tuning: the `tf-mlm` CLI, `tf_mlm.train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework; the first use of `train`, `evaluate` or `MaskFiller` sets the
Keras 2 environment (tf-keras) and imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from typing import ClassVar, Iterator, Literal

from mlm_toolkit.cli import lazy_api, make_cli
from mlm_toolkit.config import FrameworkOptions, UsageError, check_numbers, check_positive, option, precision_option

# What TensorFlow's C++ runtime prints as it starts on a machine without a GPU, whatever TF_CPP_MIN_LOG_LEVEL
# says (absl's notice before its initialisation, oneDNN and CPU notes, CUDA probes): none of the user's concern.
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cu",
    "cuda_executor.cc",
)


def prepare() -> None:
    # transformers' TF models use the Keras 2 API (tf-keras); make tf.keras agree, and keep torch out of
    # this process (it only fights TensorFlow for threads and memory here).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("USE_TORCH", "0")
    if os.environ.get("USE_TF", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TF"] = "AUTO"  # this path needs TensorFlow, whatever the environment said
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 (where C++ writes) captured, then pass on all but NATIVE_NOISE."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(noise in line for noise in NATIVE_NOISE)))


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    """The environment set, and TensorFlow's start-up noise held back, around the first import."""
    prepare()
    with native_noise_filtered():
        yield
        # TensorFlow probes for CUDA when its devices are first listed, not on import: list them here, in the
        # filter, so that a machine without a GPU does not print its failed probe later (fill-mask did).
        tensorflow = sys.modules.get("tensorflow")
        if tensorflow is not None:
            tensorflow.config.list_physical_devices()


@dataclass
class TFOptions(FrameworkOptions):
    """Settings only the Keras path has."""

    # Options that change what the model learns: part of the run's identity, checked on --resume.
    identity_fields: ClassVar[tuple[str, ...]] = ("mixed_precision",)

    mixed_precision: Literal["no", "mixed_float16", "mixed_bfloat16"] = precision_option(
        "Keras mixed-precision policy, set before the model is built.", "mixed_float16", "mixed_bfloat16"
    )
    jit_compile: bool = option(
        False, "Compile the train step with XLA (static shapes: full blocks, whole batches).", switch=True
    )
    strategy: Literal["auto", "default", "mirrored", "multi-worker"] = option(
        "auto", "tf.distribute strategy (auto: mirrored when several GPUs are visible)."
    )
    pt_weights: bool = option(
        True,
        "Also write PyTorch weights (pytorch_model.bin, converted in a PyTorch process at the end), so PyTorch "
        "and its pipeline load the folder.",
        switch=True,
    )
    worker_timeout: int = option(
        300, "With --strategy multi-worker: seconds to wait for every worker of TF_CONFIG before giving up."
    )

    def __post_init__(self) -> None:
        check_numbers(self)
        check_positive(self, "log_every", "worker_timeout")
        if self.strategy == "multi-worker" and self.jit_compile:
            # Seen with TF 2.21: the collective gather of the embeddings' sparse gradients fails under XLA.
            raise UsageError("cannot be combined with --strategy multi-worker; drop --jit-compile", "--jit-compile")


def check_tf_config(text: str | None) -> None:
    """TF_CONFIG names a cluster of host:port workers and this worker's place (TensorFlow would hang or crash)."""
    import json

    if not text:
        raise UsageError("multi-worker needs TF_CONFIG describing the cluster and this worker", "TF_CONFIG")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise UsageError(f"is not valid JSON ({error})", "TF_CONFIG") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError('needs a "cluster" object, e.g. {"worker": ["host1:12345", "host2:12345"]}', "TF_CONFIG")
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise UsageError(f'cluster "{role}" must be a non-empty list of host:port addresses', "TF_CONFIG")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UsageError(f'cluster "{role}" address {address!r} is not host:port', "TF_CONFIG")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise UsageError(f'needs a "task" whose "type" is one of {sorted(cluster)}', "TF_CONFIG")
    index, members = task.get("index"), cluster[task["type"]]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(members):
        where = f'cluster "{task["type"]}" (0 to {len(members) - 1})'
        raise UsageError(f"task index {index!r} is not a position in {where}", "TF_CONFIG")


__all__ = ["MaskFiller", "TFOptions", "evaluate", "main", "train", "__version__"]
__version__ = version("mlm-toolkit")
__getattr__ = lazy_api(__name__, {"train": "training", "evaluate": "training", "MaskFiller": "infer"}, prepared)


def train_from_cli(run, options):
    # transformers 4.x reaches PushToHubCallback through its Trainer utilities, which need torch visible; only
    # a pushing run pays for that, and this is before anything imports transformers.
    if run.hub.push_to_hub:
        os.environ.setdefault("USE_TORCH", "AUTO")
    return __getattr__("train")(run, options)


SUMMARY = "Fine-tune masked language models with Keras (TensorFlow): compile() and fit()."
main = make_cli("tf-mlm", SUMMARY, TFOptions, __getattr__, train=train_from_cli, version=__version__)
