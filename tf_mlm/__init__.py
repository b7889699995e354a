"""Keras-first TensorFlow masked-LM fine-tuning: the `tf-mlm` CLI, `tf_mlm.train`, `tf_mlm.MaskFiller`.

Importing the package loads no framework; the first use of `train`, `evaluate` or `MaskFiller` sets the
Keras 2 environment (tf-keras) and imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from importlib.metadata import version
from typing import Iterator

from mlm_toolkit.cli import lazy_api, make_cli
from mlm_toolkit.compat import trimmed_imports
from tf_mlm.compat import native_noise_filtered
from tf_mlm.options import TFOptions


def prepare() -> None:
    # transformers' TF models use the Keras 2 API (tf-keras); make tf.keras agree, and keep torch out of
    # this process (it only fights TensorFlow for threads and memory here).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("USE_TORCH", "0")
    if os.environ.get("USE_TF", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TF"] = "AUTO"  # this path needs TensorFlow, whatever the environment said
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    """The environment set, and TensorFlow's start-up noise held back, around the first import."""
    prepare()
    with native_noise_filtered():
        trimmed_imports()
        yield
        # TensorFlow probes for CUDA when its devices are first listed, not on import: list them here, in the
        # filter, so that a machine without a GPU does not print its failed probe later (fill-mask did).
        tensorflow = sys.modules.get("tensorflow")
        if tensorflow is not None:
            tensorflow.config.list_physical_devices()


__all__ = ["MaskFiller", "TFOptions", "evaluate", "main", "train", "__version__"]
__version__ = version("mlm-toolkit")
__getattr__ = lazy_api(__name__, {"train": "training", "evaluate": "training", "MaskFiller": "infer"}, prepared)


def train_from_cli(run, options):
    # transformers 4.x reaches PushToHubCallback through its Trainer utilities, which need torch visible; only
    # a pushing run pays for that, and this is before anything imports transformers.
    if run.hub.push_to_hub:
        os.environ.setdefault("USE_TORCH", "AUTO")
    return __getattr__("train")(run, options)


SUMMARY = "Fine-tune masked language models with Keras (TensorFlow): compile() and fit()."
main = make_cli("tf-mlm", SUMMARY, TFOptions, __getattr__, train=train_from_cli, version=__version__)
