"""PyTorch masked-LM fine-tuning with Accelerate: the `pt-mlm` CLI, `pt_mlm.train`, `pt_mlm.MaskFiller`.

Importing the package loads no framework: torch comes with the first use of `train`, `evaluate` or `MaskFiller`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from importlib.metadata import version
from typing import ClassVar, Iterator, Literal

from mlm_toolkit.cli import lazy_api, make_cli
from mlm_toolkit.config import FrameworkOptions, UsageError, check_numbers, check_positive, option, precision_option


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    """What transformers reads when first imported: torch on, TensorFlow off (its collators would import it)."""
    os.environ.setdefault("USE_TF", "0")
    if os.environ.get("USE_TORCH", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TORCH"] = "AUTO"  # this path needs torch, whatever the environment said
    yield


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
    onednn_linears: bool = option(
        True,
        "On a CPU in float32, the encoder's linear layers on oneDNN's products (faster than MKL on AMD).",
        switch=True,
    )
    torch_compile: bool = option(False, "torch.compile the encoder (pays off on GPUs for long runs).", switch=True)
    tf_weights: bool = option(
        False,
        "Also write Keras weights (tf_model.h5, converted in a TensorFlow process at the end), so "
        "TensorFlow and its pipeline load the folder; the PyTorch weights are then pytorch_model.bin.",
        switch=True,
    )
    loader_workers: int | None = option(None, "Processes masking batches ahead (default: 2 with a GPU, 0 on a CPU).")

    def __post_init__(self) -> None:
        check_numbers(self)
        check_positive(self, "log_every")
        check_positive(self, "gradient_accumulation_steps", "save_total_limit", allow_none=True)
        import torch  # here, not at the top: the CLI builds these options before it imports any framework

        if self.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise UsageError("fp16 needs a CUDA GPU and none is visible; use bf16 on a CPU", "--mixed-precision")
        if self.loader_workers is None:
            # Masking processes: on a GPU they mask the next batches while the step runs; on a CPU they
            # would take cores from the step itself.
            self.loader_workers = 2 if torch.cuda.is_available() else 0
        check_positive(self, "loader_workers", or_zero=True)


__all__ = ["MaskFiller", "PTOptions", "evaluate", "main", "train", "__version__"]
__version__ = version("mlm-toolkit")
__getattr__ = lazy_api(__name__, {"train": "training", "evaluate": "training", "MaskFiller": "infer"}, prepared)


SUMMARY = "Fine-tune masked language models with PyTorch and Hugging Face Accelerate."
main = make_cli("pt-mlm", SUMMARY, PTOptions, __getattr__, version=__version__)
