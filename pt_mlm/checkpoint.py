"""Accelerate checkpoints that are either complete or invisible.

`accelerator.save_state` writes model, optimizer, scheduler and RNG states into a staging folder;
our `trainer_state.json` adds where the run stood (step, epoch, batch) and its loss log. Only when
every process has finished writing does the main process rename the folder into place and move the
`latest` pointer, so a kill at any moment leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.errors import UsageError
from shared.outputs import checkpoint_dir, commit_dir, mark_latest, staging_dir

STATE = "trainer_state.json"
# Settings a resumed run must share with its checkpoint, or the data order and schedule would differ.
MUST_MATCH = ("per_device_batch_size", "gradient_accumulation_steps", "block_size", "seed", "num_processes")


@dataclass
class Progress:
    """Where a run stands: optimizer steps done, and the position in the current epoch."""

    global_step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0  # per process, multiples of the accumulation steps
    loss_log: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def save_checkpoint(accelerator, out: Path, progress: Progress, keep: int | None) -> Path:
    final = checkpoint_dir(out, progress.global_step)
    partial = staging_dir(final) if accelerator.is_main_process else final.with_name(f".tmp-{final.name}")
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        (partial / STATE).write_text(json.dumps(asdict(progress)))
    accelerator.wait_for_everyone()  # every shard is on disk before the folder counts
    if accelerator.is_main_process:
        commit_dir(partial, final)
        mark_latest(out, final, keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, settings: dict) -> Progress:
    """Restore model, optimizer, scheduler and RNG from `path`; refuse one made with other settings."""
    state_file = path / STATE
    if not state_file.is_file():
        raise UsageError(f"{str(path)!r} is not a complete pt-mlm checkpoint (no {STATE})", "--resume")
    progress = Progress(**json.loads(state_file.read_text()))
    for key in MUST_MATCH:
        saved, now = progress.settings.get(key), settings.get(key)
        if saved != now:
            raise UsageError(f"checkpoint {path.name} was made with {key}={saved}, this run has {now}", "--resume")
    accelerator.load_state(str(path))
    return progress
