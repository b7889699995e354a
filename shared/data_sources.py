"""Where the rows come from: the built-in corpus, local files and folders, or the Hub.

Rows stay in `datasets`' Arrow tables; the text column (dotted for nested fields, lists joined with a space
as the guide does) becomes the texts. Offline, a Hub id fails at once, naming the local alternatives.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml

from mlm_toolkit.config import BUILTIN_DATASET, DataConfig
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.hub import hub_offline_reason, is_offline_mode, offline_message

log = logging.getLogger(__name__)

# datasets builder for each local file ending.
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
# The column read when --text-column is not given: the guide's ELI5 answers, else run_mlm.py's choice.
DEFAULT_COLUMNS = ("answers.text", "text")
VALIDATION = "validation"


@dataclass
class Splits:
    """The texts of a run: train and held-out rows, each a `datasets.Dataset` with one column "text"."""

    train: Any
    held_out: Any
    source: str
    text_column: str  # as resolved
    held_out_from: str  # where the held-out rows come from, in words
    rows: int | None  # rows read for training (None when streaming: not known in advance)
    skipped: int | None  # rows without text


def _local_files(path: Path, flag: str) -> tuple[str, list[str]]:
    """(datasets builder, files) for a local file or a folder of files of one format."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in LOCAL_FORMATS) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"folder {str(path)!r} holds no {'/'.join(LOCAL_FORMATS)} files", flag)
    formats = {LOCAL_FORMATS.get(p.suffix.lower()) for p in files}
    if None in formats:
        ending = files[0].suffix or "(no ending)"
        raise UsageError(f"unknown format {ending!r}; use one of {', '.join(LOCAL_FORMATS)}", flag)
    if len(formats) > 1:
        raise UsageError(f"folder {str(path)!r} mixes formats {sorted(formats)}", flag)
    empty = [p for p in files if p.stat().st_size == 0]
    if empty:
        raise UsageError(f"file {str(empty[0])!r} is empty", flag)
    builder = formats.pop()
    if builder in ("json", "csv", "text"):  # Arrow reads bytes unchecked; a bad one would fail much later
        for file in files:
            check_utf8(file, flag)
    return builder, [str(p) for p in files]


def check_utf8(path: Path, flag: str) -> None:
    """Refuse a text file that is not UTF-8, naming its line and byte (found by a second pass, on failure)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            for piece in iter(lambda: f.read(1 << 22), b""):
                decoder.decode(piece)
            decoder.decode(b"", final=True)
        return
    except UnicodeDecodeError:
        pass
    offset = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                where = f"line {number}, byte {offset + error.start}"
                raise UsageError(f"{str(path)!r} is not UTF-8 text: {where} ({error.reason})", flag) from None
            offset += len(line)


def first_bad_json_line(path: Path) -> str | None:
    """Where a JSON-lines file stops being JSON, for a message a user can act on."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                if line.strip():
                    json.loads(line.strip())
            except json.JSONDecodeError as error:
                return f"line {number} is not JSON ({error.msg} at column {error.colno})"
    return None


PROGRESS_ROWS = 50_000  # datasets' progress bars for corpora of this many rows and more, where they help


@contextlib.contextmanager
def progress_bars(shown: bool) -> Iterator[None]:
    """datasets' progress bars on or off for a block (for a small corpus they only interleave with the log)."""
    from datasets.utils import logging as bars

    was = bars.is_progress_bar_enabled()
    (bars.enable_progress_bar if shown else bars.disable_progress_bar)()
    try:
        yield
    finally:
        (bars.enable_progress_bar if was else bars.disable_progress_bar)()


def _quiet_load(*args, flag: str, what: str, **kwargs):
    """`datasets.load_dataset` for a local source, without progress bars (a local file reads in moments);
    a file it cannot read is bad input naming `flag`."""
    import datasets

    library_log = logging.getLogger("datasets")
    level = library_log.level
    library_log.setLevel(logging.CRITICAL)  # its own account of a bad file would print before ours
    try:
        with progress_bars(False):
            return datasets.load_dataset(*args, **kwargs)
    except Exception as error:  # datasets raises many types for unreadable files
        message = str(error).splitlines()[0]
        files = kwargs.get("data_files") or []
        where = next(filter(None, (first_bad_json_line(Path(f)) for f in files)), None)
        if where:
            raise UsageError(f"cannot read {what}: {where}", flag) from error
        for word, named in (("config", "--dataset-config"), ("split", "--train-split")):
            if isinstance(error, ValueError) and word in message.lower() and flag == "--dataset":
                raise UsageError(f"{what}: {message}", named) from error
        raise UsageError(f"cannot read {what}: {message}", flag) from error
    finally:
        library_log.setLevel(level)


def _is_dataset_folder(path: Path) -> bool:
    """A folder laid out as a dataset repository: a README declaring configs, or files named by split."""
    readme = path / "README.md"
    if readme.is_file() and "configs:" in readme.read_text(errors="replace"):
        return True
    return any(p.stem.split("-")[0] in ("train", VALIDATION) for p in path.iterdir() if p.is_file())


def open_split(config: DataConfig, split: str, limit: int | None = None):
    """The first `limit` rows of one split of the source (an `IterableDataset` with --streaming)."""
    import datasets

    name, streaming = config.dataset, config.streaming
    path = Path(name).expanduser()
    if name == BUILTIN_DATASET:
        if split != "train":
            raise UsageError(f"{BUILTIN_DATASET} has one split, 'train', not {split!r}", "--train-split")
        rows = builtin_eli5_rows()
        dataset = datasets.Dataset.from_list(rows[:limit] if limit else rows)
        return dataset.to_iterable_dataset() if streaming else dataset
    if path.is_dir() and _is_dataset_folder(path):  # read as the Hub would read the same repository
        dataset = _quiet_load(
            str(path), config.dataset_config, split=split, streaming=streaming, flag="--dataset", what=name
        )
    elif path.exists():
        if split != "train":
            raise UsageError(f"a file or plain folder has one split, 'train', not {split!r}", "--train-split")
        builder, files = _local_files(path, "--dataset")
        dataset = _quiet_load(
            builder, data_files=files, split="train", streaming=streaming, flag="--dataset", what=repr(name)
        )
    elif name.startswith((".", "/", "~", "builtin:")) or path.suffix.lower() in LOCAL_FORMATS:  # a path, not an id
        raise UsageError(f"no such file, folder or built-in: {name!r} (built-in: {BUILTIN_DATASET})", "--dataset")
    else:
        dataset = _hub_split(name, config.dataset_config, split, streaming)
    if limit:
        dataset = dataset.take(limit) if streaming else dataset.select(range(min(limit, len(dataset))))
    return dataset


def _hub_split(name: str, dataset_config: str | None, split: str, streaming: bool):
    """A Hub dataset's split; offline, the copy in the local cache, or one line naming the built-ins."""
    import datasets

    reason = hub_offline_reason()
    if reason and not is_offline_mode():  # unreachable: do not wait on the HTTP client's retries
        raise RunError(offline_message("dataset", name, reason))
    try:  # offline mode: datasets reads its cached copy without touching the network
        return datasets.load_dataset(name, dataset_config, split=split, streaming=streaming)
    except Exception as error:
        if reason:
            raise RunError(offline_message("dataset", name, reason)) from error
        flag = "--dataset-config" if "config" in str(error).lower() else "--dataset"
        raise RunError(f"{flag}: cannot load {name!r} from the Hub: {str(error).splitlines()[0]}") from error


def has_validation_split(config: DataConfig) -> bool:
    """Whether the source has a split of its own named `validation` (then no rows are held out of train)."""
    path = Path(config.dataset).expanduser()
    if config.dataset == BUILTIN_DATASET or (path.exists() and not path.is_dir()):
        return False
    if path.is_dir():
        if not _is_dataset_folder(path):
            return False
        import datasets

        builder = datasets.load_dataset_builder(str(path), config.dataset_config)
        return VALIDATION in (builder.info.splits or {}) or VALIDATION in (builder.config.data_files or {})
    if hub_offline_reason():
        return False  # the cached copy is what loads; its validation split, if any, is found on load
    from datasets import get_dataset_split_names

    try:
        return VALIDATION in get_dataset_split_names(config.dataset, config.dataset_config)
    except Exception:  # unknown here; load_dataset reports the real problem with the train split
        return False


def open_validation_file(config: DataConfig):
    path = Path(config.validation_file).expanduser()
    if not path.exists():
        raise UsageError(f"no such file or folder: {config.validation_file!r}", "--validation-file")
    builder, files = _local_files(path, "--validation-file")
    what, streaming = repr(config.validation_file), config.streaming
    return _quiet_load(
        builder, data_files=files, split="train", streaming=streaming, flag="--validation-file", what=what
    )


def column_names(dataset) -> list[str]:
    """Every column, nested fields by their dotted names (answers.text)."""
    features = dataset.features
    if features is None:  # a stream whose schema is not known before its first row
        first = next(iter(dataset))
        return sorted(_dotted(first))
    return list(features.flatten().keys())


def _dotted(row: dict, prefix: str = "") -> list[str]:
    names = []
    for key, value in row.items():
        names.append(prefix + key)
        if isinstance(value, dict):
            names.extend(_dotted(value, f"{prefix}{key}."))
    return names


def resolve_text_column(config: DataConfig, columns: list[str]) -> str:
    if config.text_column:
        if config.text_column not in columns:
            found = f"not found; the dataset has {', '.join(columns)}"
            raise UsageError(f"column {config.text_column!r} {found}", "--text-column")
        return config.text_column
    for name in DEFAULT_COLUMNS:
        if name in columns:
            return name
    neither = f"the dataset has neither {' nor '.join(DEFAULT_COLUMNS)}"
    raise UsageError(f"{neither}; name one of {', '.join(columns)} with --text-column", "--text-column")


def _as_text(value: Any) -> str:
    """A row's text: strings as they are, lists joined with a space (as the guide does), else ''."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return ""


def _texts_of_batch(values: list, path: list[str]) -> dict[str, list[str]]:
    for key in path:  # down a nested field: answers -> text
        values = [v.get(key) if isinstance(v, dict) else None for v in values]
    return {"text": [_as_text(v) for v in values]}


def _has_text(texts: list[str]) -> list[bool]:
    return [bool(t and t.strip()) for t in texts]


def texts_of(rows, column: str, workers: int | None):
    """The rows' texts in one column "text", rows with none left out: Arrow in, Arrow out."""
    import datasets

    # A top-level column whose name holds a dot ("a.b") is itself; else the dots go down nested fields.
    top, *path = [column] if column in (rows.column_names or ()) else column.split(".")
    streamed = isinstance(rows, datasets.IterableDataset)
    parallel = {} if streamed else {"num_proc": workers}
    with progress_bars(not streamed and len(rows) >= PROGRESS_ROWS):
        texts = rows.map(
            _texts_of_batch,
            batched=True,
            input_columns=[top],
            remove_columns=rows.column_names,  # None for a stream of unknown schema: dropped below
            fn_kwargs={"path": path},
            **parallel,
        )
        if streamed:
            texts = texts.select_columns(["text"])
        return texts.filter(_has_text, batched=True, input_columns=["text"], **parallel)


def digest(texts) -> str:
    """SHA-256 of a split's texts in order (read in Arrow batches): identifies a run's data and token cache."""
    sha = hashlib.sha256()
    for batch in texts.with_format("arrow").iter(batch_size=10_000):
        for text in batch.column("text").to_pylist():
            sha.update(text.encode())
            sha.update(b"\0")
    return sha.hexdigest()


def load_splits(config: DataConfig, seed: int) -> Splits:
    """Train and held-out texts for a run (map mode): load, read the column, drop rows without text, split."""
    rows = load_rows(config)
    column = resolve_text_column(config, column_names(rows))
    workers = config.preprocessing_num_workers
    train = texts_of(rows, column, workers)
    skipped = len(rows) - len(train)
    if skipped:
        log.warning("skipped %d of %d rows whose %r is empty or not text", skipped, len(rows), column)
    held_out, held_out_from = held_out_source(config)
    if held_out is not None:
        held_out = texts_of(held_out, resolve_text_column(config, column_names(held_out)), workers)
        _require_rows(train, 1, repr(config.dataset), "--dataset", "to train on")
        _require_rows(held_out, 1, held_out_from, held_out_from.split()[0], "to evaluate on")
    else:
        _require_rows(train, 2, repr(config.dataset), "--dataset", "to split train and test")
        count = math.ceil(config.test_size * len(train))  # as datasets rounds it
        if count >= len(train):
            none_left = f"{config.test_size} of {len(train)} usable rows leaves no rows to train on"
            raise UsageError(f"{none_left}; use a smaller share or more rows (--max-samples)", "--test-size")
        split = train.train_test_split(test_size=config.test_size, seed=seed)
        train, held_out = split["train"], split["test"]
        held_out_from = f"{config.test_size:g} of the rows (--test-size)"
    return Splits(train, held_out, config.dataset, column, held_out_from, len(rows), skipped)


def load_rows(config: DataConfig):
    """The rows `--dataset`, `--train-split` and `--max-samples` name, before any text is read."""
    return open_split(config, config.train_split, config.max_samples)


def held_out_source(config: DataConfig):
    """(rows, description) of the held-out source, or (None, None) when rows must be held out of train."""
    if config.validation_file:
        if Path(config.validation_file).expanduser().resolve() == Path(config.dataset).expanduser().resolve():
            rows = "the perplexity is measured on rows the model trains on, not on held-out ones"
            log.warning(f"--validation-file is the training file (--dataset): {rows}")
        return open_validation_file(config), f"--validation-file {config.validation_file}"
    if has_validation_split(config):
        return open_split(config, VALIDATION), f"--dataset {config.dataset}'s {VALIDATION} split"
    return None, None


def _require_rows(texts, needed: int, where: str, flag: str, purpose: str) -> None:
    if len(texts) < needed:
        raise UsageError(f"{where} has {len(texts)} usable rows; at least {needed} are needed {purpose}", flag)


def _english_files() -> list[Any]:
    try:
        root = resources.files("chatterbot_corpus") / "data" / "english"
    except ModuleNotFoundError as error:
        package = "chatterbot-corpus"
        raise RunError(f"the built-in dataset needs the {package} package: pip install {package}") from error
    return sorted((f for f in root.iterdir() if f.name.endswith(".yml")), key=lambda f: f.name)


def builtin_eli5_rows() -> list[dict[str, Any]]:
    """All English conversations with at least one answer, as ELI5-shaped rows, in a stable order."""
    rows = []
    for file in _english_files():
        content = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        category = (content.get("categories") or [file.name.removesuffix(".yml")])[0]
        for n, conversation in enumerate(content.get("conversations") or []):
            lines = [str(line).strip() for line in conversation if line is not None and str(line).strip()]
            if len(lines) < 2:
                continue
            q_id, texts = f"{file.name.removesuffix('.yml')}-{n:04d}", lines[1:]
            ids, urls = [f"{q_id}-{i}" for i in range(len(texts))], [[] for _ in texts]
            answers = {"a_id": ids, "text": texts, "score": [1] * len(texts), "text_urls": urls}
            row = {"q_id": q_id, "title": lines[0], "selftext": "", "category": str(category)}
            rows.append({**row, "subreddit": "chatterbot", "answers": answers, "title_urls": [], "selftext_urls": []})
    return rows
