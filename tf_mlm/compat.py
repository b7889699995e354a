"""Every place tf-mlm reaches past TensorFlow's, tf-keras' or transformers' public surface, with why
(docs/compat.md).

Speed (off with --no-workarounds, and when tf-keras is not a version these were written for): Adam's slots made at
compile time (`create_slots`), evaluations eager until they have taken 10 s, the loss traced without autograph
(`tf_mlm.heads`), with Longformer's one branching call converted alone (`autograph_where_it_branches`).
Needed to work at all: `IterableSafeOpen` (transformers 4.x iterates over the `safe_open` handle, which
safetensors >= 0.6 no longer allows: transformers issue #40028, not to be fixed), the optimizer's
`_aggregate_gradients` (`tf_mlm.heads`), `BackupAndRestore._backup` (`tf_mlm.callbacks`), and
`native_noise_filtered` (TensorFlow's C++ start-up notes, printed whatever TF_CPP_MIN_LOG_LEVEL says).
For an exact resume: the dropout generators' states found by their variables' name, DeBERTa's StableDropout
replaced, and the generators of dropout the build never called made before the first step (`resumable_dropout`,
`generator_stable_dropout`, `make_idle_generators`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from packaging.specifiers import SpecifierSet

import mlm_toolkit.compat

WRITTEN_FOR = {"tf-keras": SpecifierSet(">=2.16,<2.22")}  # the versions the private calls were written for


def speed_workarounds(wanted: bool) -> bool:
    return mlm_toolkit.compat.speed_workarounds(wanted, WRITTEN_FOR)


@contextlib.contextmanager
def resumable_dropout() -> Iterator[list]:
    """Keras' random layers (Dropout) made inside draw from a `tf.random.Generator` of their own instead of
    TensorFlow's stateful random ops, whose counters no checkpoint holds. Yields the generators' state
    variables as they are made (some families keep dropout layers outside their layer tree, Funnel's positional
    ones): with them in the backup, a resumed fit draws the dropout an uninterrupted one draws. tf-keras'
    switch is process-wide: put back as it was."""
    import tensorflow as tf
    from transformers.modeling_tf_utils import keras

    states = []

    def recorded(next_creator, **kwargs):
        variable = next_creator(**kwargs)
        if kwargs.get("name") == "StateVar":  # the name tf.random.Generator gives its state
            states.append(variable)
        return variable

    was = keras.backend.experimental.is_tf_random_generator_enabled()
    keras.backend.experimental.enable_tf_random_generator()
    try:
        with tf.variable_creator_scope(recorded):
            yield states
    finally:
        if not was:
            keras.backend.experimental.disable_tf_random_generator()


STABLE_DROPOUT = ("TFDebertaStableDropout", "TFDebertaV2StableDropout")


def generator_stable_dropout(model) -> None:
    """DeBERTa's StableDropout draws its mask from `tf.compat.v1` Bernoulli, a stateful random op: each gets
    Keras' Dropout in its place, the same inverted dropout (drop with its probability, scale the rest by
    1 / (1 - p), the gradient through the same mask), drawing from a generator (`resumable_dropout`)."""
    from transformers.modeling_tf_utils import keras

    for layer in model.submodules:
        if type(layer).__name__ in STABLE_DROPOUT and layer.drop_prob > 0:
            dropout = keras.layers.Dropout(layer.drop_prob)
            dropout.build(None)  # its generator made now, inside resumable_dropout
            layer.call = lambda inputs, training=False, dropout=dropout: dropout(inputs, training=training)


def make_idle_generators(model) -> None:
    """The generators of the random layers the model's build did not call, made now, inside `resumable_dropout`.
    Longformer's global-attention dropout runs only for tokens marked global, which no batch of ours marks, yet
    the step's graph holds that branch: made in the first step's trace, a generator is missing from the backups
    and makes tf.function trace the step twice (docs/compat.md)."""
    from transformers.modeling_tf_utils import keras

    for layer in model.submodules:
        if isinstance(layer, keras.__internal__.layers.BaseRandomLayer) and not layer.built:
            layer.build(None)


def autograph_where_it_branches(model) -> None:
    """Longformer's self-attention branches on a tensor in Python (`if is_global_attn:`), so its loss would be
    traced with autograph, which converts every function the model calls (docs/compat.md). That call alone is
    converted instead (its own `if` becomes a `tf.cond`, as autograph makes it), and the rest traces plain."""
    for layer in model.submodules:
        if type(layer).__name__ == "TFLongformerSelfAttention":
            layer.call = _converted(type(layer).call).__get__(layer)


@functools.cache
def _converted(call):
    import tensorflow as tf

    return tf.autograph.to_graph(call, recursive=False)


def create_slots(optimizer, variables) -> None:
    """Adam's slots now, not in the first step: a tf.function that creates variables is traced twice. The
    private method is how tf-keras' own weight loading builds a legacy optimizer's slots."""
    optimizer._create_all_weights(variables)


# What TensorFlow's C++ runtime prints as it starts on a machine without a GPU, whatever TF_CPP_MIN_LOG_LEVEL
# says (absl's notice before its initialisation, oneDNN and CPU notes, CUDA probes): none of the user's concern.
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


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 (where C++ writes) captured, then pass on all but NATIVE_NOISE."""
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
            sys.stderr.write("".join(line for line in lines if not any(noise in line for noise in NATIVE_NOISE)))


class IterableSafeOpen:
    """`safe_open` whose handle can be iterated for its tensor names, as transformers 4.x expects."""

    def __init__(self, *args, **kwargs) -> None:
        from safetensors import safe_open

        self._handle = safe_open(*args, **kwargs)

    def __enter__(self) -> "IterableSafeOpen":
        self._handle.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._handle.__exit__(*exc)

    def __iter__(self):
        return iter(self._handle.keys())

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


def patch_safetensors_loading() -> None:
    import transformers.modeling_tf_pytorch_utils as pt_utils
    import transformers.modeling_tf_utils as tf_utils

    for module in (tf_utils, pt_utils):
        if getattr(module, "safe_open", None) is not None:
            module.safe_open = IterableSafeOpen


def load_masked_lm(resolved, **kwargs):
    """`TFAutoModelForMaskedLM.from_pretrained` for a resolved model, whatever weights file it holds."""
    from transformers import TFAutoModelForMaskedLM

    from mlm_toolkit.models import load_weights

    patch_safetensors_loading()
    folder = Path(resolved.location)
    # transformers reads PyTorch's model.safetensors into TensorFlow itself; `from_pt` would import torch into
    # this process to read it, and is needed only for a pytorch_model.bin alone.
    only_bin = (folder / "pytorch_model.bin").is_file() and not any(
        (folder / name).is_file() for name in ("tf_model.h5", "model.safetensors")
    )
    if folder.is_dir() and only_bin:
        kwargs = {"from_pt": True, **kwargs}
    return load_weights(
        lambda: TFAutoModelForMaskedLM.from_pretrained(resolved.location, **resolved.load_kwargs(), **kwargs),
        resolved.name,
    )
