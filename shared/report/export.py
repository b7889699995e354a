"""Weights for both frameworks in every output folder, loadable by plain `transformers`.

transformers 4.x loads a PyTorch `model.safetensors` into TensorFlow through a code path that fails with
current safetensors ("'safe_open' object is not iterable", transformers#40028, not to be fixed: its TF
code is deprecated), and it prefers `model.safetensors` over `tf_model.h5` whenever both are there. So
a folder both frameworks load unaided holds `pytorch_model.bin` and `tf_model.h5`, and no
`model.safetensors`. The other framework's weights are written by a short child process, so
TensorFlow and PyTorch never share the training process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PT_WEIGHTS, TF_WEIGHTS, SAFETENSORS = "pytorch_model.bin", "tf_model.h5", "model.safetensors"

_TO_TF = """
import sys
from transformers import TFAutoModelForMaskedLM
TFAutoModelForMaskedLM.from_pretrained(sys.argv[1], from_pt=True).save_pretrained(sys.argv[1])
"""

_TO_PT = """
import sys
from transformers import AutoConfig, AutoModelForMaskedLM, TFAutoModelForMaskedLM
from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model
# Built from config and filled from the Keras model: from_pretrained(from_tf=True) leaves meta tensors.
model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(sys.argv[1]))
load_tf2_model_in_pytorch_model(model, TFAutoModelForMaskedLM.from_pretrained(sys.argv[1]))
model.save_pretrained(sys.argv[1], safe_serialization=False)
"""


def add_weights_for_other_framework(folder: Path, have: str) -> bool:
    """Write TensorFlow weights beside PyTorch ones (`have="pt"`) or the reverse; False (with a warning)
    when the other framework cannot be imported here."""
    # "AUTO" for both: a "1" for one framework switches the other off in transformers. No GPU: the
    # conversion is small, and the training process may hold the GPU's memory.
    env = {
        **os.environ,
        "USE_TF": "AUTO",
        "USE_TORCH": "AUTO",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    code = _TO_TF if have == "pt" else _TO_PT
    weights, other = (TF_WEIGHTS, "TensorFlow") if have == "pt" else (PT_WEIGHTS, "PyTorch")
    log.info("converting the weights to %s (%s) in a %s process", weights, other, other)
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("could not add %s weights: %s", other, (done.stderr.strip().splitlines() or ["?"])[-1])
        return False
    return True
