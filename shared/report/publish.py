"""Pushing a finished output folder to the Hugging Face Hub, and checking before training that it can."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from mlm_toolkit.config import HubConfig
from mlm_toolkit.errors import RunError
from mlm_toolkit.hub import hub_offline_reason

# Checkpoints, logs and the Keras callback's clone of the repository (hub/) stay local; the Hub gets
# the model, tokenizer, card, metrics and curve.
NOT_PUSHED = [
    "checkpoint-*",
    "runs/*",
    ".tmp-*",
    "backup/*",
    "backup-previous/*",
    "hub/*",
    "hub-push/*",
    ".lock",
]


def check_push_possible(hub: HubConfig) -> None:
    """Fail before training, not after hours of it, when a push at the end could not work."""
    from huggingface_hub import get_token

    reason = hub_offline_reason()
    if reason:
        raise RunError(f"--push-to-hub: {reason}; train without --push-to-hub and upload the folder later")
    if not (hub.hub_token or get_token()):
        raise RunError(
            "--push-to-hub: no Hugging Face token; pass --hub-token, run `hf auth login` or set HF_TOKEN"
        )


class Pushes:
    """The pushes of one run: with --hub-strategy every_save, each save's model in the background (a save
    waits for the push before it, so they land in order); at the end, the whole folder, once."""

    STAGING = "hub-push"  # inside --output-dir: the model of the latest save, as it is being uploaded

    def __init__(self, hub: HubConfig) -> None:
        from huggingface_hub import HfApi

        self.hub, self.api, self.pending = hub, HfApi(token=hub.hub_token), None
        self.api.create_repo(hub.hub_model_id, private=hub.hub_private, exist_ok=True)

    def push_save(self, out: Path, save: Callable[[Path], None], message: str) -> None:
        """Write the model with `save(folder)` and upload it without waiting (every_save only)."""
        if self.hub.hub_strategy != "every_save":
            return
        self.wait()
        folder = out / self.STAGING
        shutil.rmtree(folder, ignore_errors=True)
        save(folder)
        self.pending = self.api.upload_folder(
            repo_id=self.hub.hub_model_id, folder_path=str(folder), commit_message=message, run_as_future=True
        )

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()  # a failed background push fails the run here, with its own error
            self.pending = None

    def push_folder(self, folder: Path, message: str) -> str:
        """Upload the finished folder (after the last background push); returns the commit URL."""
        self.wait()
        shutil.rmtree(folder / self.STAGING, ignore_errors=True)
        commit = self.api.upload_folder(
            repo_id=self.hub.hub_model_id,
            folder_path=str(folder),
            commit_message=message,
            ignore_patterns=NOT_PUSHED,
        )
        return str(getattr(commit, "commit_url", commit))
