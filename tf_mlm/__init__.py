"""Keras-first TensorFlow masked-LM fine-tuning: `tf-mlm train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework: `train` and `MaskFiller` import TensorFlow when first used.
"""

__version__ = "0.1.0"
__all__ = ["MaskFiller", "TFOptions", "train", "__version__"]


def __getattr__(name: str):
    if name == "train":
        from tf_mlm.training import train

        return train
    if name == "MaskFiller":
        from tf_mlm.infer import MaskFiller

        return MaskFiller
    if name == "TFOptions":
        from tf_mlm.options import TFOptions

        return TFOptions
    raise AttributeError(f"module 'tf_mlm' has no attribute {name!r}")
