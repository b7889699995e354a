"""The Hugging Face Hub: whether it can be reached, and pushing a run's folder to it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from mlm_toolkit.config import BUILTIN_DATASET, BUILTIN_MODEL, BUILTIN_MODEL_ORIGIN, HubConfig
from mlm_toolkit.errors import RunError

_reachable: bool | None = None
_TRUE = {"1", "true", "yes", "on"}


def is_offline_mode() -> bool:
    """HF_HUB_OFFLINE, in the environment or as huggingface_hub read it when first imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def hub_offline_reason() -> str | None:
    """Why the Hub cannot be used now (None when it can): HF_HUB_OFFLINE, else one HEAD request with a short
    timeout, once per process, so an offline machine fails in seconds, not after the client's retries."""
    from huggingface_hub import constants

    global _reachable
    if is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    if _reachable is None:
        from huggingface_hub.utils import get_session

        try:
            get_session().head(constants.ENDPOINT, timeout=3, allow_redirects=False)  # any answer will do
            _reachable = True
        except Exception:  # requests' connection errors, a proxy refusing, a TLS failure
            _reachable = False
    return None if _reachable else f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached"


def offline_message(kind: str, name: str, reason: str) -> str:
    """One line naming the local alternatives, for a Hub id that cannot be fetched."""
    builtin = BUILTIN_MODEL if kind == "model" else BUILTIN_DATASET
    flag = "--model" if kind == "model" else "--dataset"
    local = "a folder saved with save_pretrained" if kind == "model" else "a local jsonl/json/csv/parquet/txt file"
    return f"{flag}: {name!r} is a Hub id but {reason}; use {flag} {builtin} (offline built-in) or {local}"


def hub_base_model(name: str) -> str | None:
    """The Hub id a model card names as base model: none for a local folder, the built-in's origin."""
    return BUILTIN_MODEL_ORIGIN if name == BUILTIN_MODEL else None if Path(name).expanduser().exists() else name


# Checkpoints, logs and the Keras callback's clone of the repository (hub/) stay local; the Hub gets
# the model, tokenizer, card, metrics and curve.
NOT_PUSHED = ["checkpoint-*", "runs/*", ".tmp-*", "backup/*", "backup-previous/*", "hub/*", "hub-push/*", ".lock"]


def check_push_possible(hub: HubConfig) -> None:
    """Fail before training, not after hours of it, when a push at the end could not work."""
    from huggingface_hub import get_token

    reason = hub_offline_reason()
    if reason:
        raise RunError(f"--push-to-hub: {reason}; train without --push-to-hub and upload the folder later")
    if not (hub.hub_token or get_token()):
        raise RunError("--push-to-hub: no Hugging Face token; pass --hub-token, run `hf auth login` or set HF_TOKEN")


class Pushes:
    """A run's pushes: with every_save, each save's model in the background, in order; the folder at the end."""

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
            repo_id=self.hub.hub_model_id, folder_path=str(folder), commit_message=message, ignore_patterns=NOT_PUSHED
        )
        return str(getattr(commit, "commit_url", commit))
