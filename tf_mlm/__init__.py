"""Keras-first TensorFlow masked-LM fine-tuning: `tf-mlm train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework and sets nothing: `train` and `MaskFiller` import TensorFlow when first used.
"""

from shared.lazy import lazy_exports
from tf_mlm.environment import prepared

__version__ = "0.1.0"
__all__ = ["MaskFiller", "TFOptions", "train", "__version__"]
__getattr__ = lazy_exports(__name__, {"train": "tf_mlm.training:train", "MaskFiller": "tf_mlm.infer:MaskFiller",
                                      "TFOptions": "tf_mlm.options:TFOptions"}, around=prepared)
