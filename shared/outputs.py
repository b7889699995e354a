"""The output folder's rules: never overwrite a previous run unless asked, and write atomically.

Checkpoints and final models are written into a temporary sibling folder and renamed when complete,
so a run killed mid-save leaves the previous checkpoint loadable and never a half-written model that
looks finished. A `latest` file, updated last, names the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from shared.config import TrainConfig
from shared.errors import RunError, UsageError

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def check_output_dir(config: TrainConfig) -> Path:
    """Refuse a non-empty --output-dir unless resuming or told to overwrite. Reads only, so every
    process of a multi-process run can call it before any of them writes."""
    out = Path(config.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{str(out)!r} is a file, not a folder", "--output-dir")
    if out.is_dir() and any(out.iterdir()) and not (config.overwrite_output_dir or config.resume):
        raise UsageError(
            f"{str(out)!r} already holds a run; pass --overwrite-output-dir to replace it, "
            "--resume auto to continue it, or choose another folder",
            "--output-dir",
        )
    return out


def create_output_dir(config: TrainConfig) -> Path:
    """Create --output-dir (emptied first with --overwrite-output-dir) and prove it is writable."""
    out = check_output_dir(config)
    if out.is_dir() and config.overwrite_output_dir and not config.resume:
        shutil.rmtree(out)  # asked for: stale checkpoints must not be resumed into the new run
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):  # unwritable or full disk: say so before training
            pass
    except OSError as error:
        raise RunError(f"--output-dir: cannot write to {str(out)!r}: {error.strerror or error}") from error
    return out


def staging_dir(final: Path) -> Path:
    """A fresh temporary sibling of `final`, named predictably so every process of a run agrees on it."""
    partial = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(partial, ignore_errors=True)  # left by a run killed mid-save
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial


def commit_dir(partial: Path, final: Path) -> None:
    """Make a completely written `partial` folder visible as `final` with one rename."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; it becomes `final` only if the block finishes without error."""
    partial = staging_dir(final)
    try:
        yield partial
        commit_dir(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step-{step:07d}"


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary folders never count)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def mark_latest(out: Path, checkpoint: Path, keep: int | None) -> None:
    """Point `latest` at `checkpoint` (atomically), then prune beyond the newest `keep`."""
    pointer = out / CHECKPOINTS / LATEST
    partial = pointer.with_name(f".{LATEST}.tmp")
    partial.write_text(checkpoint.name + "\n")
    os.replace(partial, pointer)
    if keep:
        for old in complete_checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def find_resume_checkpoint(out: Path, resume: str) -> Path:
    """The checkpoint `--resume` names: 'auto' is the newest complete one in --output-dir."""
    if resume != "auto":
        path = Path(resume).expanduser()
        if not path.is_dir():
            raise UsageError(f"no checkpoint folder at {resume!r}", "--resume")
        return path
    found = complete_checkpoints(out)
    if not found:
        raise UsageError(f"no complete checkpoint in {str(out / CHECKPOINTS)!r} to resume from", "--resume")
    return found[-1]


def save_model_atomically(out: Path, save: Callable[[Path], None]) -> None:
    """Write the final model with `save(folder)` into staging, then move its files to the top of
    `out`, where pipelines look. `all_results.json`, written after this, marks the run complete."""
    staged = out / "model"
    with atomic_dir(staged) as partial:
        save(partial)
    for item in staged.iterdir():
        item.replace(out / item.name)
    staged.rmdir()
