"""Keras-first TensorFlow masked-LM fine-tuning: `tf-mlm train`, `tf_mlm.MaskFiller`."""

import os

# transformers' TF models use the Keras 2 API (tf-keras); make tf.keras agree, and keep torch out of
# this process (it only fights TensorFlow for threads and memory here).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("USE_TORCH", "0")
if os.environ.get("USE_TF", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
    os.environ["USE_TF"] = "AUTO"  # this path needs TensorFlow, whatever the environment said
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tf_mlm.infer import MaskFiller  # noqa: E402
from tf_mlm.train import TFOptions, train  # noqa: E402

__all__ = ["MaskFiller", "TFOptions", "train", "__version__"]
