"""Settings only the Keras path has. No framework is imported here, so the CLI answers at once."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import check_numbers, option
from shared.errors import UsageError


@dataclass
class TFOptions:
    """Settings only the Keras path has."""

    mixed_precision: str = option(
        "no", "Keras mixed-precision policy, set before the model is built.",
        choices=("no", "mixed_float16", "mixed_bfloat16"),
    )
    jit_compile: bool = option(False, "Compile the train step with XLA (static shapes: full blocks, whole batches).", switch=True)
    strategy: str = option(
        "auto", "tf.distribute strategy (auto: mirrored when several GPUs are visible).",
        choices=("auto", "default", "mirrored", "multi-worker"),
    )
    sparse_head: bool = option(True, "Project only masked positions onto the vocabulary (same loss, less compute).", switch=True)

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.mixed_precision not in ("no", "mixed_float16", "mixed_bfloat16"):
            raise UsageError(f"must be no, mixed_float16 or mixed_bfloat16, got {self.mixed_precision!r}", "--mixed-precision")
        if self.strategy not in ("auto", "default", "mirrored", "multi-worker"):
            raise UsageError(f"unknown strategy {self.strategy!r}", "--strategy")
        if self.strategy == "multi-worker" and self.jit_compile:
            # Seen with TF 2.21: the collective gather of the embeddings' sparse gradients fails under XLA.
            raise UsageError("cannot be combined with --strategy multi-worker; drop --jit-compile", "--jit-compile")
