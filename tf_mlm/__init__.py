"""Keras-first TensorFlow masked-LM fine-tuning: `tf-mlm train`, `tf_mlm.train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework and sets nothing. The first use of `train`, `evaluate` or
`MaskFiller` sets the Keras 2 environment (tf-keras) and imports TensorFlow: use them, not the modules
behind them, which expect that environment.
"""

from importlib.metadata import version

from tf_mlm.options import TFOptions

__all__ = ["MaskFiller", "TFOptions", "evaluate", "train", "__version__"]
__version__ = version("mlm-toolkit")


def __getattr__(name: str):
    from tf_mlm.environment import prepared

    with prepared():  # TF_USE_LEGACY_KERAS and the rest before TensorFlow is first imported
        if name == "train":
            from tf_mlm.training import train

            return train
        if name == "evaluate":
            from tf_mlm.evaluation import evaluate

            return evaluate
        if name == "MaskFiller":
            from tf_mlm.infer import MaskFiller

            return MaskFiller
    raise AttributeError(f"module 'tf_mlm' has no attribute {name!r}")
