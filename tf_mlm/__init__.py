"""Keras-first TensorFlow masked-LM fine-tuning: `tf-mlm train`, `tf_mlm.train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework and sets nothing. The first use of `train` or `MaskFiller`
sets the Keras 2 environment (tf-keras) and imports TensorFlow.
"""

from mlm_toolkit.lazy import framework_exports

__all__ = ["MaskFiller", "TFOptions", "evaluate", "train", "__version__"]
__getattr__ = framework_exports(__name__, "TFOptions")
