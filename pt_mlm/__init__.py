"""PyTorch masked-LM fine-tuning with Hugging Face Accelerate: `pt-mlm train`, `pt_mlm.MaskFiller`.

Importing the package loads no framework and sets nothing: `train` and `MaskFiller` import torch when first used.
"""

from shared.lazy import lazy_exports
from pt_mlm.environment import prepared

__version__ = "0.1.0"
__all__ = ["MaskFiller", "PTOptions", "train", "__version__"]
__getattr__ = lazy_exports(__name__, {"train": "pt_mlm.training:train", "MaskFiller": "pt_mlm.infer:MaskFiller",
                                      "PTOptions": "pt_mlm.options:PTOptions"}, around=prepared)
