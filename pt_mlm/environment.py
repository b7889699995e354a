"""The environment the PyTorch path needs, set before transformers is imported: by `pt_mlm.train`,
`pt_mlm.evaluate` and `pt_mlm.MaskFiller` when first asked for (and the pt-mlm CLI through them), never
by an import."""

import os


def prepare() -> None:
    # transformers' collators import TensorFlow whenever it is installed: its threads and memory are of no
    # use to this path.
    os.environ.setdefault("USE_TF", "0")
    if os.environ.get("USE_TORCH", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TORCH"] = "AUTO"  # this path needs torch, whatever the environment said
