"""Texts to blocks: tokenizing, the guide's `group_texts`, and the cache of blocks.

The blocks go to an Arrow file in the cache that both frameworks read through a memory map, so a large corpus
costs disk, not RAM.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mlm_toolkit.config import DataConfig
from mlm_toolkit.data_sources import PROGRESS_ROWS, progress_bars
from mlm_toolkit.errors import UsageError
from mlm_toolkit.outputs import cache_root, sha256_of, write_text_atomically

log = logging.getLogger(__name__)

CACHE_VERSION = 2
PIECE_CHARS = 1 << 16  # a longer text is tokenized in pieces (`token_ids`)
EVAL_BLOCKS_CAP = 10_000  # --max-eval-samples' default: evaluating more costs time and tells little more


def group_into_blocks(token_lists: list[list[int]] | list[np.ndarray], block_size: int) -> tuple[np.ndarray, int]:
    """The guide's `group_texts` in linear time (its `sum(lists, [])` is quadratic): (int32 blocks, dropped)."""
    grouper = Grouper(block_size)
    blocks = grouper.add(np.concatenate([np.asarray(t, dtype=np.int32) for t in token_lists] or [[]]))
    return blocks, grouper.dropped


class Grouper:
    """`group_texts` over a stream of tokens: a remainder waits for the next tokens (dropped at the end)."""

    def __init__(self, block_size: int, carry: Iterable[int] = ()) -> None:
        self.block_size, self.carry = block_size, np.asarray(list(carry), dtype=np.int32)

    def add(self, tokens: np.ndarray) -> np.ndarray:
        flat = np.concatenate([self.carry, np.asarray(tokens, dtype=np.int32)])
        usable = len(flat) // self.block_size * self.block_size
        self.carry = flat[usable:]
        return flat[:usable].reshape(-1, self.block_size)

    @property
    def dropped(self) -> int:
        return len(self.carry)


def pad_examples(token_lists, block_size: int, pad_id: int) -> np.ndarray:
    """--line-by-line: each (already truncated) example alone in a block, padded to the block size."""
    lengths = np.asarray(token_lists.value_lengths())
    blocks = np.full((len(lengths), block_size), pad_id, dtype=np.int32)
    columns = np.arange(block_size)
    blocks[columns[None, :] < lengths[:, None]] = np.asarray(token_lists.flatten(), dtype=np.int32)
    return blocks


class Blocks:
    """Blocks of token ids in a memory-mapped Arrow file: `len()`, `blocks[i]`, `head(n)` (NumPy views of the
    map) and `dataset` (a `datasets.Dataset` over the same file, for Keras and the reference recipes)."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self.path = Path(path)
        table = pa.ipc.open_stream(pa.memory_map(str(self.path))).read_all()
        self.block_size = table.schema.field("input_ids").type.list_size
        self._parts = [
            chunk.flatten().to_numpy().reshape(-1, self.block_size)
            for chunk in table.column("input_ids").chunks
            if len(chunk)
        ]
        self._starts = np.cumsum([0] + [len(part) for part in self._parts]).tolist()
        about = self.path.with_suffix(".json")
        self.dropped_tokens = json.loads(about.read_text())["dropped_tokens"] if about.is_file() else 0

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.block_size

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):  # a copy of the rows asked for
            rows = [self[i] for i in range(len(self))[index]]
            return np.stack(rows) if rows else np.zeros((0, self.block_size), np.int32)
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        part = bisect.bisect_right(self._starts, index) - 1
        return self._parts[part][index - self._starts[part]]

    def head(self, count: int) -> np.ndarray:
        """The first `count` blocks, as one array."""
        starts = self._starts[:-1]
        parts = [part[: max(count - start, 0)] for part, start in zip(self._parts, starts, strict=True)]
        return np.concatenate([np.zeros((0, self.block_size), np.int32), *parts])

    def holds_other_than(self, ids: list[int]) -> bool:
        """Whether any block holds a token not in `ids` (the special tokens, which are never masked)."""
        return any(np.isin(part, ids, invert=True).any() for part in self._parts)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.head(len(self)).astype(dtype or np.int32)

    @property
    def dataset(self):
        import datasets

        return datasets.Dataset.from_file(str(self.path))

    def __reduce__(self):  # another process maps the file itself rather than receiving a copy of the rows
        return Blocks, (self.path,)


def write_blocks(batches: Iterator, path: Path, block_size: int, pad_id: int | None) -> int:
    """Group (or, with `pad_id`, pad) Arrow batches of token lists into an Arrow file; returns the tokens dropped."""
    import pyarrow as pa

    schema = pa.schema([("input_ids", pa.list_(pa.int32(), block_size))])
    grouper = Grouper(block_size)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for lists in batches:
                if pad_id is None:
                    blocks = grouper.add(np.asarray(lists.flatten(), dtype=np.int32))
                else:
                    blocks = pad_examples(lists, block_size, pad_id)
                if len(blocks):
                    values = pa.array(blocks.reshape(-1), type=pa.int32())
                    array = pa.FixedSizeListArray.from_arrays(values, block_size)
                    writer.write_batch(pa.record_batch([array], schema=schema))
        # What was dropped, and the file's checksum, beside it, written first: the blocks file is the one that
        # counts.
        about = {"dropped_tokens": grouper.dropped, "sha256": sha256_of(partial)}
        write_text_atomically(path.with_suffix(".json"), json.dumps(about))
        os.replace(partial, path)  # atomic: a reader never sees a half-written cache file
    finally:
        partial.unlink(missing_ok=True)
    return grouper.dropped


def pieces(text: str) -> Iterator[str]:
    """`text` in pieces of at most PIECE_CHARS, each cut before a space (where pre-tokenizers split words)."""
    start = 0
    while len(text) - start > PIECE_CHARS:
        cut = text.rfind(" ", start + 1, start + PIECE_CHARS)
        cut = cut if cut > start else start + PIECE_CHARS  # a million characters without a space
        yield text[start:cut]
        start = cut
    yield text[start:]


def token_ids(texts: list[str], tokenizer, max_length: int | None = None) -> list:
    """Each text's token ids, special tokens included, truncated to `max_length` if given. A longer text than
    PIECE_CHARS is tokenized in pieces: a whole encoding holds some 200 bytes a token (docs/data.md)."""
    if max_length:  # only the text's start counts
        short = [text[:PIECE_CHARS] for text in texts]
        backend = tokenizer.backend_tokenizer
        kept = backend.truncation
        try:
            return tokenizer(short, truncation=True, max_length=max_length, verbose=False)["input_ids"]
        finally:  # the call leaves its truncation set, and the run saves this tokenizer beside its model
            backend.no_truncation() if kept is None else backend.enable_truncation(**kept)
    # verbose=False: no warning that a text is longer than the model: cutting long texts is what blocks do
    ids = tokenizer([t if len(t) <= PIECE_CHARS else "" for t in texts], verbose=False)["input_ids"]
    wrap = tokenizer.build_inputs_with_special_tokens([-1])
    before, after = wrap[: wrap.index(-1)], wrap[wrap.index(-1) + 1 :]
    for n, text in enumerate(texts):
        if len(text) > PIECE_CHARS:
            inner = [  # as int32 arrays at once: a list of Python ints takes 9 times the room
                np.asarray(tokenizer(p, add_special_tokens=False, verbose=False)["input_ids"], dtype=np.int32)
                for p in pieces(text)
            ]
            ids[n] = np.concatenate([before, *inner, after]).astype(np.int32)
    return ids


def _tokenize_batch(texts: list[str], tokenizer, max_length: int | None) -> dict[str, list]:
    return {"input_ids": token_ids(texts, tokenizer, max_length)}


def tokenized(texts, tokenizer, config: DataConfig):
    """The texts' token ids (special tokens included, as the guide), in Arrow, in parallel workers."""
    import datasets

    with progress_bars(len(texts) >= PROGRESS_ROWS):
        return texts.map(
            _tokenize_batch,
            batched=True,
            input_columns=["text"],
            remove_columns=["text"],
            fn_kwargs={"tokenizer": tokenizer, "max_length": config.block_size if config.line_by_line else None},
            features=datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))}),
            num_proc=config.preprocessing_num_workers,
            desc="tokenizing",
        )


def tokenizer_state(tokenizer) -> str:
    """How `tokenizer` turns texts into ids, as JSON: its truncation and padding are settings of a call (a
    tokenizer saved after a truncating call holds them), not of the ids it gives."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return json.dumps(state, sort_keys=True)


def _cache_key(texts_digest: str, tokenizer, config: DataConfig) -> str:
    key = hashlib.sha256(f"v{CACHE_VERSION}|{config.block_size}|line-by-line {config.line_by_line}|".encode())
    key.update(tokenizer_state(tokenizer).encode())
    key.update(texts_digest.encode())
    return key.hexdigest()[:24]


def cache_damage(path: Path) -> str | None:
    """Why a cached blocks file cannot be trusted (edited, truncated, or from before checksums), or None."""
    try:
        expected = json.loads(path.with_suffix(".json").read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        expected = None
    if expected is None:
        return "has no checksum beside it"
    return None if sha256_of(path) == expected else "differs from what was written"


def cached_blocks(texts, texts_digest: str, tokenizer, config: DataConfig) -> tuple[Blocks, bool]:
    """(blocks, came from cache): tokenized and grouped once per distinct input, then read from the file."""
    name = f"blocks-{_cache_key(texts_digest, tokenizer, config)}.arrow"
    path = cache_root(config) / name
    if path.is_file() and config.overwrite_cache:
        log.info("--overwrite-cache: tokenizing again into %s", path)
    elif path.is_file():
        if (damage := cache_damage(path)) is None:
            return Blocks(path), True
        log.warning("the token cache %s %s: rebuilding it", path, damage)
    pad_id = tokenizer.pad_token_id if config.line_by_line else None
    for attempt in (path, Path(tempfile.gettempdir()) / f"mlm-toolkit-{os.getpid()}" / name):
        batches = (
            batch.column("input_ids").combine_chunks()  # one ListArray per batch of rows
            for batch in tokenized(texts, tokenizer, config).with_format("arrow").iter(batch_size=10_000)
        )
        try:
            write_blocks(batches, attempt, config.block_size, pad_id)
            return Blocks(attempt), False
        except OSError as error:  # a read-only or full cache: the temporary folder, for this run only
            log.warning("could not write the token cache %s: %s", attempt, error.strerror or error)
    raise UsageError(f"cannot write the token blocks in {path.parent} nor a temporary folder", "--cache-dir")
