"""Weights for the other framework, converted in a child process of that framework."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PT_WEIGHTS, TF_WEIGHTS = "pytorch_model.bin", "tf_model.h5"

# Each a process of ours: transformers' imports trimmed as in the CLI's (docs/compat.md).
_TO_TF = """
import sys
from mlm_toolkit.compat import transformers_without_sklearn
transformers_without_sklearn()
from transformers import TFAutoModelForMaskedLM
TFAutoModelForMaskedLM.from_pretrained(sys.argv[1], from_pt=True).save_pretrained(sys.argv[1])
"""

# PyTorch only: the Keras model's weights come from the training process (`keras_weights`), converted as
# transformers' `load_tf2_model_in_pytorch_model` converts a model's `weights`, without TensorFlow in this process.
_TO_PT = """
import sys
import numpy as np, torch
from safetensors.numpy import load_file
from mlm_toolkit.compat import transformers_without_sklearn
transformers_without_sklearn()
from transformers import AutoConfig, AutoModelForMaskedLM
from transformers.modeling_tf_pytorch_utils import load_tf2_state_dict_in_pytorch_model
folder, exported, tolerance = sys.argv[1], load_file(sys.argv[2]), float(sys.argv[3])
config = AutoConfig.from_pretrained(folder)
if config.model_type == "mobilebert":  # TF trains its decoder apart from the word embeddings PyTorch ties it to
    config.tie_word_embeddings = False
model = AutoModelForMaskedLM.from_config(config)
probe, keras_logits = exported.pop("probe:ids"), exported.pop("probe:logits")
load_tf2_state_dict_in_pytorch_model(model, exported)
# A family whose classes differ in a way not known here would load and predict otherwise: checked, never
# written silently wrong.
with torch.no_grad():
    gap = np.abs(model.eval()(input_ids=torch.from_numpy(probe)).logits.numpy() - keras_logits).max()
if not gap <= tolerance:
    sys.exit(f"the PyTorch {model.config.model_type} model would predict otherwise (logits {gap:.3g} apart)")
model.save_pretrained(folder, safe_serialization=False)
"""


def keras_weights(keras_model) -> dict:
    """The Keras model's weights by name, as transformers converts them, and its logits on a probe."""
    import numpy as np

    weights = {weight.name: weight.numpy() for weight in keras_model.weights}
    if keras_model.config.model_type == "albert":  # TF adds `decoder_bias`; PyTorch ties both biases, loads `bias`
        weights[keras_model.predictions.bias.name] = keras_model.predictions.decoder_bias.numpy()
    probe = (np.arange(3, 19)[None] % keras_model.config.vocab_size).astype(np.int64)
    logits = keras_model(probe, training=False).logits
    return {**weights, "probe:ids": probe, "probe:logits": np.asarray(logits, dtype=np.float32)}


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


def add_tensorflow_weights(folder: Path) -> bool:
    """Write TensorFlow weights beside the PyTorch ones of `folder`; False when it cannot."""
    # "AUTO" for both: a "1" for one framework switches the other off in transformers.
    env = {"USE_TF": "AUTO", "USE_TORCH": "AUTO", "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return _convert(TF_WEIGHTS, "TensorFlow", env, [_TO_TF, str(folder)])


def add_pytorch_weights(folder: Path, keras_model) -> bool:
    """Write PyTorch weights of `keras_model` (trained, saved in `folder`) beside its own; False when it cannot."""
    import tempfile

    from safetensors.numpy import save_file

    # A model computing in 16 bits gives its probe's logits to 16 bits: the check allows for it.
    tolerance = 1e-3 if keras_model.compute_dtype == "float32" else 5e-2
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / "keras-weights.safetensors"
        save_file(keras_weights(keras_model), str(exported))
        return _convert(
            PT_WEIGHTS,
            "PyTorch",
            {"USE_TF": "0", "USE_TORCH": "AUTO"},
            [_TO_PT, str(folder), str(exported), str(tolerance)],
        )


def _convert(weights: str, framework: str, env: dict, code_and_args: list[str]) -> bool:
    log.info("converting the weights to %s (%s) in a %s process", weights, framework, framework)
    # No GPU: the conversion is small, and the training process may hold the GPU's memory.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **env}
    done = subprocess.run([sys.executable, "-c", *code_and_args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("could not add %s weights: %s", framework, (done.stderr.strip().splitlines() or ["?"])[-1])
        return False
    return True
