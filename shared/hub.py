"""Knowing, quickly, whether the Hugging Face Hub can be reached, and saying what to do when not."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from mlm_toolkit.config import BUILTIN_DATASET, BUILTIN_MODEL

_reachable: bool | None = None


def hub_offline_reason() -> str | None:
    """Why the Hub cannot be used now (None when it can). Checked once per process.

    HF_HUB_OFFLINE is honoured first; otherwise one TCP connection with a short timeout decides, so an
    offline machine fails in seconds instead of waiting on the HTTP client's retries.
    """
    global _reachable
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    if _reachable is None:
        host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
        try:
            socket.create_connection((host, 443), timeout=3).close()
            _reachable = True
        except OSError:
            _reachable = False
    return None if _reachable else "the Hugging Face Hub cannot be reached"


def offline_message(kind: str, name: str, reason: str) -> str:
    """One line naming the local alternatives, for a Hub id that cannot be fetched."""
    builtin = BUILTIN_MODEL if kind == "model" else BUILTIN_DATASET
    flag = "--model" if kind == "model" else "--dataset"
    local = (
        "a folder saved with save_pretrained"
        if kind == "model"
        else "a local jsonl/json/csv/parquet/txt file"
    )
    return f"{flag}: {name!r} is a Hub id but {reason}; use {flag} {builtin} (offline built-in) or {local}"
