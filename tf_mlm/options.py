"""`TFOptions`: the settings only the Keras path has, and the check of a multi-worker run's TF_CONFIG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from mlm_toolkit.config import FrameworkOptions, option, precision_option
from mlm_toolkit.errors import UsageError
from mlm_toolkit.values import check_numbers, check_positive


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
