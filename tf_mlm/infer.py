"""`tf_mlm.MaskFiller`: load a trained folder and fill masks from Python, with TensorFlow ops.

from tf_mlm import MaskFiller
MaskFiller("runs/minilm-tf")("The Milky Way is a <mask> galaxy.", top_k=3)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mlm_toolkit.fill_mask import MaskFillerBase
from mlm_toolkit.models import load_checked, max_block_size, resolve_model
from tf_mlm.compat import load_masked_lm


class MaskFiller(MaskFillerBase):
    """The guide's TensorFlow top-k: `tf.math.top_k` over the logits at each mask position."""

    def __init__(self, model: str) -> None:
        resolved = resolve_model(model)
        config, tokenizer = load_checked(resolved, block_size=1)  # an unusable folder is one clear line
        super().__init__(tokenizer, max_block_size(config, tokenizer))
        self.model = load_masked_lm(resolved)

    def _top_k(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, k: int, candidates: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, training=False).logits
        mask_positions = tf.where(input_ids == self.tokenizer.mask_token_id)  # (masks, 2), row-major order
        mask_logits = tf.cast(tf.gather_nd(logits, mask_positions), tf.float32)
        probs = tf.nn.softmax(mask_logits, axis=-1)
        if candidates is not None:
            probs = tf.gather(probs, candidates, axis=-1)
        top = tf.math.top_k(probs, k=k)
        tokens = top.indices.numpy()
        return top.values.numpy(), tokens if candidates is None else candidates[tokens]
