"""PyTorch masked-LM fine-tuning with Accelerate: `pt-mlm train`, `pt_mlm.train`, `pt_mlm.MaskFiller`.

Importing the package loads no framework, so the CLI answers `--help` at once; torch comes with the first
use of `train`, `evaluate` or `MaskFiller`.
"""

import importlib
from importlib.metadata import version

from pt_mlm.options import PTOptions

__all__ = ["MaskFiller", "PTOptions", "evaluate", "train", "__version__"]
__version__ = version("mlm-toolkit")


def __getattr__(name: str):
    """`train`, `evaluate` and `MaskFiller`, from the module that defines each, on first use."""
    if name not in ("train", "evaluate", "MaskFiller"):
        raise AttributeError(f"module 'pt_mlm' has no attribute {name!r}")
    from pt_mlm.environment import prepare

    prepare()  # before transformers is first imported
    module = {"train": "training", "evaluate": "evaluation", "MaskFiller": "infer"}[name]
    return getattr(importlib.import_module(f"pt_mlm.{module}"), name)
