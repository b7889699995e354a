"""Pushing a finished output folder to the Hugging Face Hub, and checking before training that it can."""

from __future__ import annotations

from pathlib import Path

from mlm_toolkit.config import HubConfig
from mlm_toolkit.errors import RunError
from mlm_toolkit.hub import hub_offline_reason

# Checkpoints, logs and the Keras callback's clone of the repository (hub/) stay local; the Hub gets
# the model, tokenizer, card, metrics and curve.
NOT_PUSHED = ["checkpoints/*", "runs/*", ".tmp-*", "backup/*", "backup-previous/*", "hub/*", ".lock"]


def check_push_possible(hub: HubConfig) -> None:
    """Fail before training, not after hours of it, when a push at the end could not work."""
    from huggingface_hub import get_token

    reason = hub_offline_reason()
    if reason:
        raise RunError(f"--push-to-hub: {reason}; train without --push-to-hub and upload the folder later")
    if not get_token():
        raise RunError("--push-to-hub: no Hugging Face token; run `hf auth login` or set HF_TOKEN")


def push_folder(folder: Path, hub: HubConfig, message: str) -> str:
    """Create the repository if needed and upload the folder; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(hub.hub_model_id, private=hub.hub_private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=hub.hub_model_id, folder_path=str(folder), commit_message=message, ignore_patterns=NOT_PUSHED
    )
    return str(getattr(commit, "commit_url", commit))
