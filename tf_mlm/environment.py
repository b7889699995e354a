"""The environment the Keras path needs, set by the modules that import TensorFlow, before they do."""

import os


def prepare() -> None:
    # transformers' TF models use the Keras 2 API (tf-keras); make tf.keras agree, and keep torch out of
    # this process (it only fights TensorFlow for threads and memory here).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("USE_TORCH", "0")
    if os.environ.get("USE_TF", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TF"] = "AUTO"  # this path needs TensorFlow, whatever the environment said
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
