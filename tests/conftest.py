"""Shared fixtures: offline Hub, a private cache, tiny models and an ELI5-shaped jsonl."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never reach the Hub: whatever is not local must fail fast, as it does on our machines.
os.environ["HF_HUB_OFFLINE"] = "1"
# This process is the PyTorch side; TensorFlow tests run their code in child processes.
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per process: `make test` runs one pytest worker per core, and tests start child processes;
# more threads than cores only makes them wait on each other.
for threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(threads, "1")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_bert, build_tiny_roberta, write_eli5_jsonl  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mlm-cache"))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def eli5_jsonl(tmp_path_factory) -> Path:
    return write_eli5_jsonl(tmp_path_factory.mktemp("data") / "eli5.jsonl")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (it runs first otherwise, and sees none)
def pytest_collection_modifyitems(items):
    """Under `pytest -n N` (loadgroup), the tests sharing a module-scoped fixture (a trained run) go to one
    worker, which builds it once; every other test goes wherever a worker is free. The TensorFlow tests
    (each a minute or so of child processes) are handed out first, the quick ones fill the gaps after."""
    items.sort(key=lambda item: item.get_closest_marker("tf") is None)
    for item in items:
        shared = sorted(
            name
            for name, defs in getattr(item, "_fixtureinfo", None).name2fixturedefs.items()
            if defs and defs[-1].scope == "module"
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{','.join(shared)}"))
