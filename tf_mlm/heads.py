"""Masked-LM loss with the vocabulary projection on masked positions only, the Keras way (as `pt_mlm`).

XLA needs static shapes: there a fixed number of rows is gathered, masked positions first, with a margin no
batch exceeds (twice the expected count plus 64), and padding rows weighted 0.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from transformers.modeling_tf_utils import keras

# The layers a TF ...ForMaskedLM applies to its encoder's output, in order (transformers 4.x's names).
HEAD_LAYERS = (
    ("lm_head",),  # RoBERTa, XLM-R, CamemBERT, Longformer, MPNet, Funnel, ESM, TAPAS
    ("mlm",),  # BERT, DeBERTa, RoFormer, RemBERT, LayoutLM
    ("predictions",),  # ALBERT, MobileBERT
    ("pred_layer",),  # XLM, FlauBERT
    ("generator_predictions", "generator_lm_head"),  # ELECTRA, ConvBERT
    ("vocab_transform", "act", "vocab_layer_norm", "vocab_projector"),  # DistilBERT
)


def encoder_and_head(model) -> tuple | None:
    """The encoder layer and the hidden->vocabulary head layers of a TF ...ForMaskedLM, when it has them."""
    encoder = getattr(model, model.base_model_prefix, None)
    for names in HEAD_LAYERS:
        layers = [getattr(model, name, None) for name in names]
        if encoder is not None and all(callable(layer) for layer in layers):
            return encoder, layers
    return None


def apply_head(layers: list, hidden, training: bool):
    for layer in layers:  # DistilBERT's activation is a plain function
        hidden = layer(hidden, training=training) if isinstance(layer, keras.layers.Layer) else layer(hidden)
    return hidden


def sparse_head_differs(model, batch: dict) -> str | None:
    """Why the head on the masked rows alone does not give the full forward's logits at those rows (None: it
    does), on `batch` (NumPy input_ids, labels, maybe attention_mask)."""
    parts = encoder_and_head(model)
    if parts is None:
        return f"{type(model).__name__} has none of the head layers {[names[0] for names in HEAD_LAYERS]}"
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch.get("attention_mask"), "training": False}
    masked = tf.reshape(batch["labels"] != -100, [-1])
    try:
        dense = tf.boolean_mask(tf.reshape(model(**inputs).logits, [tf.size(masked), -1]), masked)
        hidden = tf.boolean_mask(tf.reshape(parts[0](**inputs)[0], [tf.size(masked), -1]), masked)
        sparse = apply_head(parts[1], hidden[tf.newaxis], False)[0]
    except Exception as error:  # a family's layers may reject the cut shape in their own way
        return f"its head fails on the masked rows alone ({type(error).__name__})"
    if sparse.shape != dense.shape or not np.allclose(sparse, dense, rtol=1e-4, atol=1e-5):
        return "its head does not map each position on its own"
    return None


def masked_rows(batch_tokens: int, mlm_probability: float) -> int:
    """The fixed number of rows gathered under XLA for a batch of `batch_tokens` tokens."""
    return min(batch_tokens, math.ceil(2 * mlm_probability * batch_tokens) + 64)


def masked_token_loss_sum(*args, **kwargs):
    """`loss_sum`, traced without autograph (a shorter first step, docs/compat.md) unless the family branches on
    tensors (DeBERTa, Longformer): those are refused at once, and traced with autograph."""
    if tf.executing_eagerly():
        return loss_sum(*args, **kwargs)
    try:
        return tf.autograph.experimental.do_not_convert(loss_sum)(*args, **kwargs)
    except tf.errors.OperatorNotAllowedInGraphError:
        return loss_sum(*args, **kwargs)


def loss_sum(
    model, input_ids, labels, training: bool, rows: int | None = None, sparse: bool = True, attention_mask=None
):
    """(sum of cross-entropy over masked tokens, their count, how many are predicted right), in float32."""
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
        logits = apply_head(head, hidden[tf.newaxis], training)[0]  # the head expects (batch, length, hidden)
        weights = tf.cast(labels != -100, tf.float32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), tf.cast(logits, tf.float32))
    right = tf.cast(tf.argmax(logits, axis=-1, output_type=labels.dtype) == labels, tf.float32)
    return tf.reduce_sum(losses * weights), tf.reduce_sum(weights), tf.reduce_sum(right * weights)


def dense(gradient):
    """A gradient as one dense tensor: the norm of an embedding's IndexedSlices (a row per use, repeats
    included) is not the gradient's, so clipping would differ from PyTorch's."""
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class MaskedLMTrainer(keras.Model):
    """Trains a TF ...ForMaskedLM as its own train step does, compiled without a loss, plus the projection of
    masked rows only (`sparse`) and logs of this step's loss and gradient norm, not Keras' running mean."""

    def __init__(self, model, sparse: bool = True, rows: int | None = None, autograph: bool = False) -> None:
        super().__init__()
        self.mlm, self.sparse, self.rows = model, sparse, rows
        self.autograph = autograph  # False: the loss traced without autograph (a speed workaround)

    def call(self, inputs, training=False):
        return self.mlm(inputs, training=training)

    def train_step(self, data):
        features, labels = data if isinstance(data, tuple) else (data, data["labels"])  # prepare_tf_dataset: (x, y)
        input_ids = features["input_ids"] if isinstance(features, dict) else features
        attention_mask = features.get("attention_mask") if isinstance(features, dict) else None
        optimizer = self.optimizer
        scales_loss = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            loss_fn = loss_sum if self.autograph else masked_token_loss_sum
            total, count, _ = loss_fn(self.mlm, input_ids, labels, True, self.rows, self.sparse, attention_mask)
            loss = total / tf.maximum(count, 1.0)
            # Replicas' gradients are summed: each contributes its share of the mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = loss / replicas
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
        # Keras sums what a step returns over the replicas: the mean over replicas of the loss, as pt-mlm logs
        # it, and the gradient norm (the same on each: the gradients are summed) once.
        return {"loss": loss / replicas, "grad_norm": grad_norm / replicas}

    # PushToHubCallback saves and describes `self.model`, which is this trainer during fit.
    def save_pretrained(self, *args, **kwargs):
        return self.mlm.save_pretrained(*args, **kwargs)

    @property
    def config(self):
        return self.mlm.config
