"""Evaluation in Keras: the token-weighted mean loss over the frozen held-out blocks, as training measures
it, and `tf-mlm evaluate` for a saved model."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mlm_toolkit.run import evaluation
from mlm_toolkit.run.metrics import EvalScore, TokenWeightedMean
from tf_mlm.compat import load_masked_lm
from tf_mlm.heads import masked_token_loss_sum


def make_evaluator(model, eval_inputs: dict[str, np.ndarray], batch_size: int):
    """A function giving the token-weighted mean cross-entropy over the frozen eval set, computed
    in float32 whatever the precision policy. The graph is traced once per run, not per call."""
    batch_sums = tf.function(
        lambda ids, labels, mask: masked_token_loss_sum(model, ids, labels, False, attention_mask=mask),
        reduce_retracing=True,
    )

    def evaluate() -> EvalScore:
        mean = TokenWeightedMean()
        for start in range(0, len(eval_inputs["input_ids"]), batch_size):
            batch = {key: value[start : start + batch_size] for key, value in eval_inputs.items()}
            total, count, right = batch_sums(batch["input_ids"], batch["labels"], batch.get("attention_mask"))
            mean.add(float(total) / max(float(count), 1.0), int(count), int(right))
        return mean.score

    return evaluate


def score(resolved, tokenizer, data, batch_size: int) -> EvalScore:
    """The eval loss of the model `resolved` names on `data`'s frozen held-out inputs."""
    return make_evaluator(load_masked_lm(resolved), data.eval_inputs, batch_size)()


def evaluate(config: evaluation.EvalConfig) -> evaluation.Evaluation:
    """The perplexity of a saved model (folder, built-in or cached Hub id) on the held-out blocks."""
    return evaluation.evaluate(config, "tensorflow", score)
