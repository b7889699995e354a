"""Masked-LM loss with the vocabulary projection on masked positions only, the Keras way.

As in `pt_mlm.training`: only ~15% of positions carry a label, but the stock model projects all of them
onto the vocabulary, often half the compute. Here the encoder runs on every token and the head only
on the masked ones. Without XLA the masked rows are gathered exactly (`tf.boolean_mask`); XLA needs
static shapes, so there a fixed number of rows is gathered, masked positions first, sized with a wide
margin (twice the expected count plus 64; the chance of more masked tokens than that is nil for any
batch of a hundred tokens or more) and padding rows weighted 0.
"""

from __future__ import annotations

import math

import tensorflow as tf
from transformers.modeling_tf_utils import keras


def encoder_and_head(model) -> tuple | None:
    """The encoder layer and the hidden->vocabulary head of a TF ...ForMaskedLM, when it has them."""
    encoder = getattr(model, model.base_model_prefix, None)
    head = getattr(model, "lm_head", None) or getattr(model, "mlm", None)  # RoBERTa / BERT families
    return (encoder, head) if encoder is not None and head is not None else None


def masked_rows(batch_tokens: int, mlm_probability: float) -> int:
    """The fixed number of rows gathered under XLA for a batch of `batch_tokens` tokens."""
    return min(batch_tokens, math.ceil(2 * mlm_probability * batch_tokens) + 64)


def masked_token_loss_sum(*args, **kwargs):
    """(sum of cross-entropy over masked tokens, their count, how many of them the most likely token gets
    right), in float32 whatever the policy; the arguments are `loss_sum`'s.

    In a graph it is traced without autograph: converting a model's Python into graph code took about 3 s of
    a small BERT's first step, and BERT, RoBERTa and most families branch on Python values only. A family
    that branches on tensors (DeBERTa, Longformer) is refused at once, and then traced with autograph."""
    if tf.executing_eagerly():
        return loss_sum(*args, **kwargs)
    try:
        return tf.autograph.experimental.do_not_convert(loss_sum)(*args, **kwargs)
    except tf.errors.OperatorNotAllowedInGraphError:
        return loss_sum(*args, **kwargs)


def loss_sum(
    model, input_ids, labels, training: bool, rows: int | None = None, sparse: bool = True, attention_mask=None
):
    """`masked_token_loss_sum`. Grouped blocks come without `attention_mask` (they are full); padded
    examples (--line-by-line) with one."""
    parts = encoder_and_head(model) if sparse else None
    labels = tf.reshape(labels, [-1])
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "training": training}
    if parts is None:  # no separable head, or asked for the dense path
        logits = tf.reshape(model(**inputs).logits, [tf.size(labels), -1])
        weights = tf.cast(labels != -100, tf.float32)
    else:
        encoder, head = parts
        hidden = encoder(**inputs)[0]
        hidden = tf.reshape(hidden, [tf.size(labels), -1])
        masked = labels != -100
        if rows is None:
            hidden, labels = tf.boolean_mask(hidden, masked), tf.boolean_mask(labels, masked)
        else:
            order = tf.argsort(tf.cast(masked, tf.int32), direction="DESCENDING", stable=True)[:rows]
            hidden, labels = tf.gather(hidden, order), tf.gather(labels, order)
        logits = head(hidden[tf.newaxis], training=training)[0]  # the head expects (batch, length, hidden)
        weights = tf.cast(labels != -100, tf.float32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), tf.cast(logits, tf.float32))
    right = tf.cast(tf.argmax(logits, axis=-1, output_type=labels.dtype) == labels, tf.float32)
    return tf.reduce_sum(losses * weights), tf.reduce_sum(weights), tf.reduce_sum(right * weights)


def dense(gradient):
    """A gradient as one dense tensor. An embedding lookup's gradient comes as IndexedSlices with a row per
    use, repeats included; the global norm of those rows is not the gradient's norm, so clipping (and the
    logged norm) would differ from PyTorch's, which sees the summed dense gradient."""
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class MaskedLMTrainer(keras.Model):
    """Trains a TF ...ForMaskedLM on the masked-token loss; compiled like the model itself, without a loss.

    Its train step is the model's own (mean cross-entropy over masked tokens, gradients summed across
    replicas, the optimizer's global-norm clipping), with two additions: the vocabulary projection on
    masked rows only (`sparse`), and the logs carry this step's loss and gradient norm (before
    clipping), rather than Keras' running mean. Variables and optimizer live here for BackupAndRestore;
    the wrapped model is what gets saved.
    """

    def __init__(self, model, sparse: bool = True, rows: int | None = None) -> None:
        super().__init__()
        self.mlm, self.sparse, self.rows = model, sparse, rows

    def call(self, inputs, training=False):
        return self.mlm(inputs, training=training)

    def train_step(self, data):
        features, labels = (
            data if isinstance(data, tuple) else (data, data["labels"])
        )  # prepare_tf_dataset gives (x, y)
        input_ids = features["input_ids"] if isinstance(features, dict) else features
        attention_mask = features.get("attention_mask") if isinstance(features, dict) else None
        optimizer = self.optimizer
        scales_loss = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            total, count, _ = masked_token_loss_sum(
                self.mlm, input_ids, labels, True, self.rows, self.sparse, attention_mask
            )
            loss = total / tf.maximum(count, 1.0)
            # Replicas' gradients are summed: each contributes its share of the mean.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
            if scales_loss:
                scaled = optimizer.get_scaled_loss(scaled)
        variables = self.mlm.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if scales_loss:
            gradients = optimizer.get_unscaled_gradients(gradients)
        summed = optimizer._aggregate_gradients(list(zip(map(dense, gradients), variables, strict=True)))
        grad_norm = tf.linalg.global_norm([g for g, _ in summed])
        # Already summed across replicas; the optimizer clips (global_clipnorm) and applies.
        optimizer.apply_gradients(summed, experimental_aggregate_gradients=False)
        return {"loss": loss, "grad_norm": grad_norm}

    # PushToHubCallback saves and describes `self.model`, which is this trainer during fit.
    def save_pretrained(self, *args, **kwargs):
        return self.mlm.save_pretrained(*args, **kwargs)

    @property
    def config(self):
        return self.mlm.config
