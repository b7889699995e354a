"""Small helpers for driving `pt-mlm` on the tiny fixtures."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

# Keras weights are left out of most runs (a TensorFlow child per run); the reload tests ask for them.
TINY_ARGS = [
    "--block-size",
    "32",
    "--learning-rate",
    "1e-3",
    "--per-device-batch-size",
    "8",
    "--eval-batch-size",
    "32",
    "--no-tf-weights",
]


def run_cli(*args: str):
    from pt_mlm.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def train_tiny(model: Path, data: Path, out: Path, *extra: str):
    result = run_cli("train", "--model", model, "--dataset", data, "--output-dir", out, *TINY_ARGS, *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "all_results.json").read_text())


def load_state(folder: Path) -> dict:
    """The PyTorch weights of an output folder (pytorch_model.bin) or a checkpoint (model.safetensors)."""
    import torch
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    return torch.load(folder / "pytorch_model.bin", weights_only=True)
