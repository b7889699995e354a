"""`PTOptions`: the settings only the PyTorch path has, as the CLI and the Python API give them.

A value: `resolved` returns a new one with what the run uses (precision, accumulation, loader workers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from mlm_toolkit.config import FrameworkOptions, option, precision_option
from mlm_toolkit.values import check_numbers, check_positive


@dataclass
class PTOptions(FrameworkOptions):
    """Settings only the PyTorch path has."""

    # Options that change what the model learns: part of the run's identity, checked on --resume.
    identity_fields: ClassVar[tuple[str, ...]] = ("gradient_accumulation_steps", "mixed_precision")

    # None: left to Accelerate (`accelerate launch`, ACCELERATE_* variables, the config), else 1 / "no".
    gradient_accumulation_steps: int | None = option(
        None, "Micro-batches averaged before each optimizer step (default: Accelerate's setting, else 1)."
    )
    save_total_limit: int | None = option(None, "Keep only the newest N checkpoints.")
    mixed_precision: Literal["no", "fp16", "bf16"] | None = precision_option(
        "Autocast precision (bf16 works on CPU; fp16 needs a GPU; default: Accelerate's setting, "
        "e.g. accelerate launch --mixed_precision, else no).",
        fp16="fp16",
        bf16="bf16",
        default=None,
    )
    fused_adamw: bool = option(True, "Fused AdamW: one kernel for all parameters (as the Trainer).", switch=True)
    attention: Literal["sdpa", "eager"] | None = option(
        None,
        "Attention kernel: PyTorch's fused SDPA, or eager matmuls (default: transformers' choice, SDPA where "
        "the family has it, else eager).",
    )
    torch_compile: bool = option(False, "torch.compile the encoder (pays off on GPUs for long runs).", switch=True)
    tf_weights: bool = option(
        False,
        "Also write Keras weights (tf_model.h5, converted in a TensorFlow process at the end), so "
        "TensorFlow and its pipeline load the folder; the PyTorch weights are then pytorch_model.bin.",
        switch=True,
    )
    loader_workers: int | None = option(
        None, "Processes masking batches ahead (default: 2 with a GPU, 0 on a CPU).", hf=("dataloader_num_workers",)
    )
    gradient_checkpointing: bool = option(
        False, "Recompute activations in the backward pass: less memory, about a third more compute.", is_flag=True
    )
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = option(
        None, "Load the weights in this dtype (less memory while loading); training keeps float32 weights."
    )

    def __post_init__(self) -> None:
        check_numbers(self)
        check_positive(self, "log_every")
        check_positive(self, "gradient_accumulation_steps", "save_total_limit", allow_none=True)
        check_positive(self, "loader_workers", or_zero=True, allow_none=True)

    def resolved(self, precision: str, accumulation: int, gpu: bool) -> "PTOptions":
        """A new value with what the run uses: Accelerate's precision and accumulation, and the loader workers
        (masking processes ahead of the step on a GPU; on a CPU they would take cores from the step)."""
        workers = (2 if gpu else 0) if self.loader_workers is None else self.loader_workers
        return dataclasses.replace(
            self, mixed_precision=precision, gradient_accumulation_steps=accumulation, loader_workers=workers
        )
