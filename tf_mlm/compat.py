"""A shim for loading PyTorch safetensors into TensorFlow models: transformers 4.x iterates over the
`safe_open` handle, which safetensors >= 0.6 no longer allows (transformers issue #40028, not to be fixed).
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open as _safe_open


class IterableSafeOpen:
    """`safe_open` whose handle can be iterated for its tensor names, as transformers 4.x expects."""

    def __init__(self, *args, **kwargs) -> None:
        self._handle = _safe_open(*args, **kwargs)

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
        if getattr(module, "safe_open", None) is _safe_open:
            module.safe_open = IterableSafeOpen


def load_masked_lm(resolved, **kwargs):
    """`TFAutoModelForMaskedLM.from_pretrained` for a resolved model, whatever weights file it holds."""
    from transformers import TFAutoModelForMaskedLM

    from mlm_toolkit.sources import load_weights

    patch_safetensors_loading()
    folder = Path(resolved.location)
    only_pytorch = not (folder / "tf_model.h5").is_file() and any(
        (folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")
    )
    if folder.is_dir() and only_pytorch:  # a folder pt-mlm wrote with --no-tf-weights
        kwargs = {"from_pt": True, **kwargs}
    return load_weights(
        lambda: TFAutoModelForMaskedLM.from_pretrained(resolved.location, **resolved.load_kwargs(), **kwargs),
        resolved.name,
    )
