"""The environment the Keras path needs, set before TensorFlow is imported: by `tf_mlm.train` and
`tf_mlm.MaskFiller` when first asked for (and the tf-mlm CLI through them), never by an import."""

import contextlib
import os
import sys
import tempfile
from typing import Iterator

# What TensorFlow's C++ runtime prints as it starts on a machine without a GPU, before (or regardless of)
# TF_CPP_MIN_LOG_LEVEL: absl's pre-initialisation notice, oneDNN and CPU-feature notes, and the failed
# CUDA probes. None of it is the user's concern; anything else printed meanwhile is passed on.
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cu",
    "cuda_executor.cc",
)


def prepare() -> None:
    # transformers' TF models use the Keras 2 API (tf-keras); make tf.keras agree, and keep torch out of
    # this process (it only fights TensorFlow for threads and memory here).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("USE_TORCH", "0")
    if os.environ.get("USE_TF", "AUTO").upper() not in {"1", "ON", "YES", "TRUE", "AUTO"}:
        os.environ["USE_TF"] = "AUTO"  # this path needs TensorFlow, whatever the environment said
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Run the block with the process's stderr (file descriptor 2, where C++ writes) captured, then pass on
    every line that is not known start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write(
                "".join(line for line in lines if not any(noise in line for noise in NATIVE_NOISE))
            )


@contextlib.contextmanager
def prepared() -> Iterator[None]:
    """The environment set, and TensorFlow's start-up noise held back, around the first import."""
    prepare()
    with native_noise_filtered():
        yield
        # TensorFlow probes for CUDA when its devices are first listed, not on import: list them here, in the
        # filter, so that a machine without a GPU does not print its failed probe later (fill-mask did).
        tensorflow = sys.modules.get("tensorflow")
        if tensorflow is not None:
            tensorflow.config.list_physical_devices()
