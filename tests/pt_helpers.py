"""Small helpers for driving `pt-mlm` on the tiny fixtures."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import warm
from click.testing import CliRunner
from tiny_models import TINY_ARGS as TINY_SIZES
from tiny_models import train_command

TINY_ARGS = TINY_SIZES


def pt_train_command(model, dataset, out, *more) -> list[str]:
    return train_command(model, dataset, out, *more)


def newest_step(out: Path) -> int:
    """The newest complete checkpoint's step in `out`, found as Trainer users find it; 0 if none."""
    from transformers.trainer_utils import get_last_checkpoint

    newest = get_last_checkpoint(str(out)) if out.is_dir() else None
    return int(newest.rsplit("-", 1)[1]) if newest else 0


def checkpoint_files(out: Path) -> dict[str, str]:
    """`digest` of the checkpoint folders of `out`."""
    return {name: sha for name, sha in digest(out).items() if name.startswith("checkpoint-")}


def run_cli(*args: str):
    from pt_mlm import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@dataclass
class ChildRun:
    exit_code: int
    output: str  # stdout, then stderr

    @property
    def error_line(self) -> str:
        """The last line: where a failed run says why, in one line."""
        return self.output.strip().splitlines()[-1] if self.output.strip() else ""


def child_env(**env: str) -> dict:
    """A child's environment: this one's, without the pytest side's choice of framework."""
    return {**{k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH")}, **env}


def run_child(*args, package: str = "pt_mlm", **env: str) -> ChildRun:
    """The real CLI in a process of its own (`python -m pt_mlm ...`, forked warm: warm.py), as a user's shell
    runs it."""
    framework = {"pt_mlm": "pt", "tf_mlm": "tf"}[package]
    done = warm.run(framework, ["-m", package, *args], child_env(**env), cwd=str(Path(__file__).resolve().parents[1]))
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
    """The PyTorch weights of an output folder or a checkpoint (model.safetensors, or pytorch_model.bin)."""
    import torch
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    return torch.load(folder / "pytorch_model.bin", weights_only=True)


def pt_mlm_batches(model: Path, data: Path, count: int, batch_size: int = 4) -> list[dict]:
    """The first `count` micro-batches pt-mlm trains on, drawn by its own loader."""
    from transformers import AutoTokenizer

    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.data import prepare_data
    from pt_mlm.loaders import MapSource, SeededMasking

    tokenizer = AutoTokenizer.from_pretrained(model)
    data_ = prepare_data(DataConfig(dataset=str(data), block_size=32), tokenizer, seed=42)
    source = MapSource(data_.train_blocks, SeededMasking(tokenizer, 0.15), batch_size, seed=42)
    loader = source.loader
    source.set_position(0, 0)
    assert len(loader) >= count, "the comparison stays inside the first epoch"
    return [batch for _, batch in zip(range(count), loader, strict=False)]


class FakeHub:
    """Records what the real HfApi would be asked to do; a background upload is done at once."""

    def __init__(self) -> None:
        self.tokens, self.repos, self.uploads = [], [], []
        hub = self

        class Api:
            def __init__(self, token=None):
                hub.tokens.append(token)

            def create_repo(self, repo_id, private, exist_ok):
                hub.repos.append((repo_id, private, exist_ok))

            def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns=None, run_as_future=False):
                files = sorted(p.name for p in Path(folder_path).iterdir())
                hub.uploads.append((commit_message, files, ignore_patterns))

                class Done:
                    def result(self):
                        return "https://example.invalid/commit/1"

                return Done() if run_as_future else "https://example.invalid/commit/1"

        self.Api = Api


def fake_hub(monkeypatch) -> FakeHub:
    """Put a FakeHub where the toolkit reaches the Hub, online as far as it can tell."""
    import huggingface_hub

    import mlm_toolkit.hub as publish

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub.Api)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # the token comes from --hub-token
    monkeypatch.setattr(publish, "hub_offline_reason", lambda: None)
    return hub
