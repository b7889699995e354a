"""Accelerate checkpoints that are either complete or invisible, and load as models.

`checkpoint-N/` holds Accelerate's state, the model as `save_pretrained` writes it (so it loads as a Trainer
checkpoint does) and `progress.json`; it is renamed into place once every process has written its part.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.outputs import (
    checkpoint_dir,
    commit_dir,
    prune_checkpoints,
    require_free_space,
    staging_dir,
    write_manifest,
)
from mlm_toolkit.run import check_same_run, check_steps_left

STATE = "progress.json"  # not the Trainer's trainer_state.json: another schema
PROCESS_STATE = "stream-{}.json"  # what process N saves of its own (its stream's position)


@dataclass
class Progress:
    """Where a run stands: optimizer steps done, and the position in the current epoch."""

    global_step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0  # per process, multiples of the accumulation steps
    loss_log: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)  # what makes it this run (mlm_toolkit.run)


def save_model_folders(accelerator, tokenizer) -> None:
    """Have `save_state` write the model as `save_pretrained` does, and `load_state` read it back, instead of
    the training wrapper's state dict, which nothing else loads (Accelerate's model-state hooks)."""

    def save(models: list, weights: list, folder: str) -> None:
        if accelerator.is_main_process:
            accelerator.unwrap_model(models[0]).model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        weights.pop(0)  # saved above

    def load(models: list, folder: str) -> None:
        from safetensors.torch import load_file

        model = accelerator.unwrap_model(models.pop(0)).model  # loaded here, not by Accelerate
        missing, unexpected = model.load_state_dict(load_file(Path(folder) / "model.safetensors"), strict=False)
        model.tie_weights()  # the decoder shares the embeddings, stored once
        if unexpected or untied(model, missing):
            raise RunError(f"checkpoint {folder} holds other weights than this model's: {(unexpected or missing)[:3]}")

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def untied(model, missing: list[str]) -> list[str]:
    """The `missing` tensors that are not one of the stored ones: a tied tensor is saved once, under any of its
    names (which one depends on the family and the library's version, so the tensors are compared)."""
    tensors = model.state_dict(keep_vars=True)
    stored = {tensors[name].data_ptr() for name in tensors.keys() - set(missing)}
    return [name for name in missing if tensors[name].data_ptr() not in stored]


def tied_weights_notice(record: logging.LogRecord) -> bool:
    """False for accelerate's "Removed shared tensor": a tied decoder is stored once and tied again on load."""
    return "Removed shared tensor" not in record.getMessage()


def read_process_state(checkpoint: Path, process: int) -> dict | None:
    """What one process saved of its own beside the shared state (its stream's position), if anything."""
    path = checkpoint / PROCESS_STATE.format(process)
    return json.loads(path.read_text()) if path.is_file() else None


def save_checkpoint(
    accelerator, out: Path, progress: Progress, keep: int | None, weight_bytes: int, process_state: dict | None = None
) -> Path:
    """`process_state`: what this process must find again on resume (each process's stream position)."""
    final = checkpoint_dir(out, progress.global_step)
    # Weights and AdamW's two moments. Every process checks (and so stops) alike: none waits for another.
    require_free_space(out, 3 * weight_bytes, f"checkpoint {final.name}")
    partial = staging_dir(final) if accelerator.is_main_process else final.with_name(f".tmp-{final.name}")
    accelerator.wait_for_everyone()
    notices = logging.getLogger("accelerate.utils.other")
    notices.addFilter(tied_weights_notice)
    try:
        accelerator.save_state(str(partial))
    finally:
        notices.removeFilter(tied_weights_notice)
    if accelerator.is_main_process:
        (partial / STATE).write_text(json.dumps(asdict(progress)))
    if process_state is not None:
        (partial / PROCESS_STATE.format(accelerator.process_index)).write_text(json.dumps(process_state))
    accelerator.wait_for_everyone()  # every shard is on disk before the folder counts
    if accelerator.is_main_process:
        write_manifest(partial)
        commit_dir(partial, final)
        prune_checkpoints(out, keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, identity: dict, max_steps: int | None) -> Progress:
    """Restore model, optimizer, scheduler and RNG from `path`; refuse another run's or one at --max-steps."""
    state_file = path / STATE
    if not state_file.is_file():
        raise UsageError(f"{str(path)!r} is not a complete pt-mlm checkpoint (no {STATE})", "--resume")
    progress = Progress(**json.loads(state_file.read_text()))
    check_same_run(progress.identity, identity, f"checkpoint {path.name}")
    check_steps_left(max_steps, progress.global_step, f"checkpoint {path.name}")
    accelerator.load_state(str(path))
    return progress
