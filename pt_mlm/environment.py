"""The environment the PyTorch path needs, set by the modules that import transformers, before they do."""

import os


def prepare() -> None:
    # This path never needs TensorFlow; keep transformers and datasets from importing it (threads, memory).
    os.environ.setdefault("USE_TF", "0")
    if os.environ.get("USE_TORCH", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TORCH"] = "AUTO"  # this path needs torch, whatever the environment said
