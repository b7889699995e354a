"""The environment the PyTorch path needs, set before transformers is imported: by `pt_mlm.train` and
`pt_mlm.MaskFiller` when first asked for (and the pt-mlm CLI through them), never by an import."""

import contextlib
import os
from typing import Iterator

from mlm_toolkit.memory import transformers_without_sklearn


def prepare() -> None:
    # This path never needs TensorFlow; keep transformers and datasets from importing it (threads, memory).
    os.environ.setdefault("USE_TF", "0")
    if os.environ.get("USE_TORCH", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TORCH"] = "AUTO"  # this path needs torch, whatever the environment said
    transformers_without_sklearn()  # after USE_TF and USE_TORCH, which transformers reads on import


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    prepare()
    yield
