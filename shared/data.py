"""Loading rows from any dataset source and turning them into the guide's texts.

One resolver for three sources: the built-in offline corpus, a local file or folder, or a Hub dataset
id. Whatever the source, rows are cut to `--max-samples`, nested fields are flattened
(`answers.text`), a list in the text column is joined with a space per row (the guide's
`" ".join(x) for x in examples["answers.text"]`), and the rows are split into train and test.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlm_toolkit.config import BUILTIN_DATASET, DataConfig
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.hub import hub_offline_reason, offline_message

log = logging.getLogger(__name__)

# datasets builder for each local file ending.
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


@dataclass
class Texts:
    """The train and test texts of a run, with what was skipped on the way."""

    train: list[str]
    test: list[str]
    source: str
    rows: int
    skipped: int


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).suffix.lower() in LOCAL_FORMATS


def _local_files(path: Path) -> tuple[str, list[str]]:
    """(datasets builder, files) for a local file or a folder of files of one format."""
    files = (
        sorted(p for p in path.iterdir() if p.suffix.lower() in LOCAL_FORMATS) if path.is_dir() else [path]
    )
    if not files:
        raise UsageError(f"folder {str(path)!r} holds no {'/'.join(LOCAL_FORMATS)} files", "--dataset")
    formats = {LOCAL_FORMATS.get(p.suffix.lower()) for p in files}
    if None in formats:
        raise UsageError(
            f"unknown format {files[0].suffix or '(no ending)'!r}; use one of {', '.join(LOCAL_FORMATS)}",
            "--dataset",
        )
    if len(formats) > 1:
        raise UsageError(f"folder {str(path)!r} mixes formats {sorted(formats)}", "--dataset")
    empty = [p for p in files if p.stat().st_size == 0]
    if empty:
        raise UsageError(f"file {str(empty[0])!r} is empty", "--dataset")
    return formats.pop(), [str(p) for p in files]


def load_rows(config: DataConfig):  # -> datasets.Dataset
    """The first `max_samples` rows of the configured source, as a flattened `datasets.Dataset`."""
    import datasets

    name = config.dataset
    limit = config.max_samples
    if name == BUILTIN_DATASET:
        from mlm_toolkit.corpus import builtin_eli5_rows

        rows = builtin_eli5_rows()
        dataset = datasets.Dataset.from_list(rows[:limit] if limit else rows)
    elif Path(name).expanduser().exists():
        builder, files = _local_files(Path(name).expanduser())
        # A local file reads in moments: its "Generating train split" bar would only interleave with the log.
        shown = datasets.utils.logging.is_progress_bar_enabled()
        datasets.utils.logging.disable_progress_bar()
        try:
            dataset = datasets.load_dataset(builder, data_files=files, split="train")
        except Exception as error:  # datasets raises many types for unreadable files
            raise UsageError(
                f"cannot read {name!r} as {builder}: {str(error).splitlines()[0]}", "--dataset"
            ) from error
        finally:
            if shown:
                datasets.utils.logging.enable_progress_bar()
        if limit:
            dataset = dataset.select(range(min(limit, len(dataset))))
    elif _looks_like_path(name) or name.startswith("builtin:"):
        raise UsageError(
            f"no such file, folder or built-in: {name!r} (built-in: {BUILTIN_DATASET})", "--dataset"
        )
    else:
        reason = hub_offline_reason()
        if reason:
            raise RunError(offline_message("dataset", name, reason))
        split = f"train[:{limit}]" if limit else "train"
        try:
            dataset = datasets.load_dataset(name, split=split)
        except Exception as error:
            raise RunError(
                f"--dataset: cannot load {name!r} from the Hub: {str(error).splitlines()[0]}"
            ) from error
    return dataset.flatten()


def _as_text(value: Any) -> str | None:
    """A row's text: strings as they are, lists joined with a space (as the guide does), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return None


def load_texts(config: DataConfig, seed: int) -> Texts:
    """Train and test texts for a run: load, flatten, join, drop unusable rows, split."""
    dataset = load_rows(config)
    if config.text_column not in dataset.column_names:
        raise UsageError(
            f"column {config.text_column!r} not found; the dataset has {', '.join(dataset.column_names)}",
            "--text-column",
        )
    texts = [_as_text(v) for v in list(dataset[config.text_column])]
    kept = [t for t in texts if t and t.strip()]
    skipped = len(texts) - len(kept)
    if skipped:
        log.warning(
            "skipped %d of %d rows whose %r is empty or not text", skipped, len(texts), config.text_column
        )
    if len(kept) < 2:
        raise UsageError(
            f"{config.dataset!r} has {len(kept)} usable rows in {config.text_column!r}; "
            "at least 2 are needed "
            "to split train and test",
            "--dataset",
        )
    held_out = math.ceil(config.test_size * len(kept))  # as datasets rounds it
    if held_out >= len(kept):
        raise UsageError(
            f"{config.test_size} of {len(kept)} usable rows leaves no rows to train on; "
            "use a smaller share or more rows (--max-samples)",
            "--test-size",
        )
    import datasets

    split = datasets.Dataset.from_dict({"text": kept}).train_test_split(test_size=config.test_size, seed=seed)
    return Texts(
        list(split["train"]["text"]), list(split["test"]["text"]), config.dataset, len(texts), skipped
    )
