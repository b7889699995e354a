"""PyTorch masked-LM fine-tuning with Hugging Face Accelerate: `pt-mlm train`, `pt_mlm.MaskFiller`."""

import os

# This path never needs TensorFlow; keep transformers and datasets from importing it (threads, memory).
os.environ.setdefault("USE_TF", "0")
if os.environ.get("USE_TORCH", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
    os.environ["USE_TORCH"] = "AUTO"  # this path needs torch, whatever the environment said

__version__ = "0.1.0"

from pt_mlm.infer import MaskFiller  # noqa: E402
from pt_mlm.train import PTOptions, train  # noqa: E402

__all__ = ["MaskFiller", "PTOptions", "train", "__version__"]
