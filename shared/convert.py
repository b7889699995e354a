"""Weights for the other framework, converted in a child process of that framework."""

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
import numpy as np, torch
from transformers import AutoConfig, AutoModelForMaskedLM, TFAutoModelForMaskedLM
from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model
# Built from config and filled from the Keras model: from_pretrained(from_tf=True) leaves meta tensors.
model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(sys.argv[1]))
keras_model = TFAutoModelForMaskedLM.from_pretrained(sys.argv[1])
load_tf2_model_in_pytorch_model(model, keras_model)
# Some families tie weights in PyTorch that their TF classes train apart (ALBERT's two biases): such a
# conversion loads and predicts otherwise, so it is checked, never written silently wrong.
ids = np.arange(3, 19)[None] % model.config.vocab_size
with torch.no_grad():
    gap = np.abs(model.eval()(input_ids=torch.from_numpy(ids)).logits.numpy() - keras_model(ids).logits.numpy()).max()
if not gap <= 1e-3:
    sys.exit(f"the PyTorch {model.config.model_type} model would predict otherwise (logits {gap:.3g} apart)")
model.save_pretrained(sys.argv[1], safe_serialization=False)
"""


def add_weights_for_other_framework(folder: Path, have: str) -> bool:
    """Write TensorFlow weights beside PyTorch ones (`have="pt"`) or the reverse; False when it cannot."""
    # "AUTO" for both: a "1" for one framework switches the other off in transformers. No GPU: the
    # conversion is small, and the training process may hold the GPU's memory.
    env = {**os.environ, "USE_TF": "AUTO", "USE_TORCH": "AUTO", "CUDA_VISIBLE_DEVICES": ""}
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    code = _TO_TF if have == "pt" else _TO_PT
    weights, other = (TF_WEIGHTS, "TensorFlow") if have == "pt" else (PT_WEIGHTS, "PyTorch")
    log.info("converting the weights to %s (%s) in a %s process", weights, other, other)
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("could not add %s weights: %s", other, (done.stderr.strip().splitlines() or ["?"])[-1])
        return False
    return True
