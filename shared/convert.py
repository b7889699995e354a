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
config = AutoConfig.from_pretrained(sys.argv[1])
if config.model_type == "mobilebert":  # TF trains its decoder apart from the word embeddings PyTorch ties it to
    config.tie_word_embeddings = False
model = AutoModelForMaskedLM.from_config(config)
keras_model = TFAutoModelForMaskedLM.from_pretrained(sys.argv[1])
if config.model_type == "albert":  # TF adds `decoder_bias`; PyTorch ties both biases and loads `bias`
    keras_model.predictions.bias.assign(keras_model.predictions.decoder_bias)
load_tf2_model_in_pytorch_model(model, keras_model)
# A family whose classes differ in a way not known here would load and predict otherwise: checked, never
# written silently wrong.
ids = np.arange(3, 19)[None] % model.config.vocab_size
with torch.no_grad():
    gap = np.abs(model.eval()(input_ids=torch.from_numpy(ids)).logits.numpy() - keras_model(ids).logits.numpy()).max()
if not gap <= 1e-3:
    sys.exit(f"the PyTorch {model.config.model_type} model would predict otherwise (logits {gap:.3g} apart)")
model.save_pretrained(sys.argv[1], safe_serialization=False)
"""


# transformers' TF classes that compute otherwise than their PyTorch classes, measured on tiny models of each
# family trained in tf-mlm and converted (tests/test_model_matrix.py).
_ROBERTA_POSITIONS = ("roberta", "camembert", "xlm-roberta", "longformer")  # TF: `self.padding_idx = 1`


def pytorch_would_differ(config) -> str | None:
    """Why a model of `config` trained in TensorFlow would predict otherwise in PyTorch, or None."""
    if config.model_type in _ROBERTA_POSITIONS and config.pad_token_id != 1:
        return (
            f"transformers' TensorFlow {config.model_type} counts positions from padding index 1, "
            f"and this model's pad_token_id is {config.pad_token_id}"
        )
    if config.model_type == "esm":  # the same weights, tied alike, give other logits after training
        return "transformers' TensorFlow and PyTorch esm models predict otherwise from the same trained weights"
    return None


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
