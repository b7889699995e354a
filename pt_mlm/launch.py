"""How the run was launched: Accelerate's distributed type as the derived line names it, and the launches
that would train otherwise than asked."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mlm_toolkit.errors import UsageError

log = logging.getLogger("pt_mlm")

# Accelerate's distributed types as the derived line names them.
DISTRIBUTED = {"NO": "no", "MULTI_CPU": "DDP (CPU)", "MULTI_GPU": "DDP", "FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}


def check_launch(gpu: bool) -> None:
    """Refuse a launch that would train otherwise than asked, and say when an Accelerate config's processes
    were not started."""
    if not gpu and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        why = "Accelerate's FSDP needs GPUs (on CPU processes it cannot sync the module states, and would run DDP)"
        raise UsageError(f"{why}; leave out --use_fsdp to train CPU processes with DDP", "--use_fsdp")
    if not gpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise UsageError("DeepSpeed needs GPUs; leave out --use_deepspeed on a CPU", "--use_deepspeed")
    if "WORLD_SIZE" in os.environ:  # started by accelerate launch or torchrun: they made the processes
        return
    from accelerate.commands.config import default_config_file
    from accelerate.commands.config.config_args import load_config_from_file

    file = os.environ.get("ACCELERATE_CONFIG_FILE", default_config_file)
    try:
        asked = load_config_from_file(file).num_processes if Path(file).is_file() else 1
    except Exception:  # noqa: BLE001 (a config Accelerate itself cannot read is its launcher's to report)
        return
    if asked and asked > 1:
        how = "start it with `accelerate launch -m pt_mlm train ...` for those"
        log.warning(
            "the Accelerate config %s asks for %d processes; this run, not launched, has 1: %s", file, asked, how
        )
