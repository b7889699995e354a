"""PyTorch masked-LM fine-tuning with Accelerate: the `pt-mlm` CLI, `pt_mlm.train`, `pt_mlm.MaskFiller`.

Importing the package loads no framework: torch comes with the first use of `train`, `evaluate` or `MaskFiller`.
"""

from __future__ import annotations

import contextlib
import os
from importlib.metadata import version
from typing import Iterator

from mlm_toolkit.cli import lazy_api, make_cli
from mlm_toolkit.compat import trimmed_imports
from pt_mlm.options import PTOptions


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    """What transformers reads when first imported: torch on, TensorFlow off (its collators would import it)."""
    os.environ.setdefault("USE_TF", "0")
    if os.environ.get("USE_TORCH", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TORCH"] = "AUTO"  # this path needs torch, whatever the environment said
    trimmed_imports()
    yield


__all__ = ["MaskFiller", "PTOptions", "evaluate", "main", "train", "__version__"]
__version__ = version("mlm-toolkit")
__getattr__ = lazy_api(__name__, {"train": "training", "evaluate": "model", "MaskFiller": "infer"}, prepared)


SUMMARY = "Fine-tune masked language models with PyTorch and Hugging Face Accelerate."


def train_from_cli(run, options):
    # The heap setting is process-wide: made for the CLI's own process, never for a Python caller's.
    if options.workarounds:
        from pt_mlm.compat import keep_freed_memory

        keep_freed_memory()
    return __getattr__("train")(run, options)


main = make_cli("pt-mlm", SUMMARY, PTOptions, __getattr__, train=train_from_cli, version=__version__)
