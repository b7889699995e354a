"""Small helpers for driving `pt-mlm` on the tiny fixtures."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from tiny_models import TINY_ARGS as TINY_SIZES
from tiny_models import train_command

# Keras weights are left out of most runs (a TensorFlow child per run); the reload tests ask for them.
TINY_ARGS = [*TINY_SIZES, "--no-tf-weights"]


def pt_train_command(model, dataset, out, *more) -> list[str]:
    """`train_command` without the Keras weights."""
    return train_command(model, dataset, out, "--no-tf-weights", *more)


def run_cli(*args: str):
    from pt_mlm.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@dataclass
class ChildRun:
    exit_code: int
    output: str  # stdout, then stderr

    @property
    def error_line(self) -> str:
        """The last line: where a failed run says why, in one line."""
        return self.output.strip().splitlines()[-1] if self.output.strip() else ""


def run_child(*args, package: str = "pt_mlm", **env: str) -> ChildRun:
    """The real CLI in a process of its own (`python -m pt_mlm ...`), as a user's shell runs it."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", package, *map(str, args)],
        env={**{k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH")}, **env},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return ChildRun(done.returncode, done.stdout + done.stderr)


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below `folder`: equal digests, byte-identical folders."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train_tiny(model: Path, data: Path, out: Path, *extra: str):
    result = run_cli(*pt_train_command(model, data, out), *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "all_results.json").read_text())


def load_state(folder: Path) -> dict:
    """The PyTorch weights of an output folder (pytorch_model.bin) or a checkpoint (model.safetensors)."""
    import torch
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    return torch.load(folder / "pytorch_model.bin", weights_only=True)
