"""PyTorch masked-LM fine-tuning with Accelerate: `pt-mlm train`, `pt_mlm.train`, `pt_mlm.MaskFiller`.
Importing the package loads no framework and sets nothing; torch comes with the first use of a name."""

from mlm_toolkit.lazy import framework_exports

__all__ = ["MaskFiller", "PTOptions", "evaluate", "train", "__version__"]
__getattr__ = framework_exports(__name__, "PTOptions")
