"""Keras-first TensorFlow masked-LM fine-tuning: `tf-mlm train`, `tf_mlm.train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework and sets nothing. The first use of `train`, `evaluate` or
`MaskFiller` sets the Keras 2 environment (tf-keras) and imports TensorFlow: use them, not the modules
behind them, which expect that environment.
"""

import importlib
from importlib.metadata import version

from tf_mlm.options import TFOptions

__all__ = ["MaskFiller", "TFOptions", "evaluate", "train", "__version__"]
__version__ = version("mlm-toolkit")


def __getattr__(name: str):
    """`train`, `evaluate` and `MaskFiller`, imported on first use in the environment TensorFlow needs."""
    from tf_mlm.environment import prepared

    if name not in ("train", "evaluate", "MaskFiller"):
        raise AttributeError(f"module 'tf_mlm' has no attribute {name!r}")
    with prepared():  # TF_USE_LEGACY_KERAS and the rest before TensorFlow is first imported
        return getattr(importlib.import_module(f"tf_mlm.{MODULES[name]}"), name)


MODULES = {"train": "training", "evaluate": "evaluation", "MaskFiller": "infer"}
