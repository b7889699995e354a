"""`python tests/faults.py FAULT pt_mlm|tf_mlm ARGS...`: a CLI run with one write fault injected, in a process
of its own, as a disk or a folder would fail under a real run.

FAULT is one of:
  final-model-disk-full   the final model's weights hit a full disk (ENOSPC)
  report-read-only        all_results.json lands in a folder turned read-only (EROFS)
  no-room-after-first     the disk has room for the first checkpoint only (found before writing)
  second-checkpoint-dies-midway
                          the second PyTorch checkpoint fills the disk after its files are written
  second-checkpoint-read-only
                          the folder turns read-only as the second PyTorch checkpoint starts (EROFS)
"""

from __future__ import annotations

import errno
import importlib
import shutil
import sys
from pathlib import Path


def final_model_disk_full(framework: str) -> None:
    if framework == "pt_mlm":
        from transformers import PreTrainedModel as Model
    else:
        from transformers import TFPreTrainedModel as Model
    name = "model.safetensors" if framework == "pt_mlm" else "tf_model.h5"

    real = Model.save_pretrained

    def save_pretrained(self, save_directory, *args, **kwargs):
        if Path(save_directory).name != ".tmp-model":  # a checkpoint: only the final model meets a full disk
            return real(self, save_directory, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(save_directory) / name))

    Model.save_pretrained = save_pretrained


def report_read_only(framework: str) -> None:
    import mlm_toolkit.model_card

    real = mlm_toolkit.model_card.write_json  # what writes all_results.json

    def write_json(path, content):
        if Path(path).name == "all_results.json":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real(path, content)

    mlm_toolkit.model_card.write_json = write_json


def no_room_after_first(framework: str) -> None:
    real, calls = shutil.disk_usage, []

    def disk_usage(path):
        calls.append(path)
        usage = real(path)
        return usage if len(calls) == 1 else usage._replace(free=0)

    shutil.disk_usage = disk_usage


def second_checkpoint_dies_midway(framework: str) -> None:
    from accelerate import Accelerator

    real, calls = Accelerator.save_state, []

    def save_state(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        real(self, output_dir, **kwargs)
        if len(calls) == 2:  # written, not yet committed
            raise OSError(errno.ENOSPC, "No space left on device", f"{output_dir}/optimizer.bin")

    Accelerator.save_state = save_state


def second_checkpoint_read_only(framework: str) -> None:
    from accelerate import Accelerator

    real, calls = Accelerator.save_state, []

    def save_state(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        if len(calls) == 2:
            raise OSError(errno.EROFS, "Read-only file system", f"{output_dir}/model.safetensors")
        real(self, output_dir, **kwargs)

    Accelerator.save_state = save_state


if __name__ == "__main__":
    fault, framework, *args = sys.argv[1:]
    globals()[fault.replace("-", "_")](framework)
    importlib.import_module(framework).main(args)
