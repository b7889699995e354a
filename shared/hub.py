"""Knowing, quickly, whether the Hugging Face Hub can be reached, and saying what to do when not.

Asked the way huggingface_hub itself asks: its offline switch (`HF_HUB_OFFLINE`), its endpoint
(`HF_ENDPOINT`, a mirror or a private Hub), and its HTTP session, which honours `HTTPS_PROXY`,
`HTTP_PROXY` and `NO_PROXY`.
"""

from __future__ import annotations

import os

from mlm_toolkit.config import BUILTIN_DATASET, BUILTIN_MODEL

_reachable: bool | None = None
_TRUE = {"1", "true", "yes", "on"}


def is_offline_mode() -> bool:
    """HF_HUB_OFFLINE, in the environment or as huggingface_hub read it when first imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_offline_reason() -> str | None:
    """Why the Hub cannot be used now (None when it can). Checked once per process.

    Offline mode is honoured first; otherwise one HEAD request to the endpoint, with a short timeout and
    no retries, decides, so an offline machine fails in seconds instead of waiting on the client's retries.
    """
    global _reachable
    if is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    if _reachable is None:
        from huggingface_hub.utils import get_session

        try:
            get_session().head(endpoint(), timeout=3, allow_redirects=False)  # any answer will do
            _reachable = True
        except Exception:  # requests' connection errors, a proxy refusing, a TLS failure
            _reachable = False
    return None if _reachable else f"the Hugging Face Hub ({endpoint()}) cannot be reached"


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
