"""Texts to blocks, and blocks to masked inputs: the guide's `group_texts` and its collator.

The blocks go to an Arrow file in the cache that both frameworks read through a memory map, so a large corpus
costs disk, not RAM. The held-out blocks are masked once with a fixed seed: a checkpoint always gets the same
perplexity, in either framework.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mlm_toolkit.config import DataConfig, UsageError
from mlm_toolkit.outputs import write_text_atomically
from mlm_toolkit.sources import PROGRESS_ROWS, Splits, digest, load_splits, progress_bars

IGNORED = -100  # the label of a position the loss skips


def mask_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the mask of the block at `position` of epoch `epoch`'s order (or of a stream's pass)."""
    return (seed * 1_000_003 + epoch * 10_000_019 + position) % (2**63)


def micro_batch_seed(seed: int, epoch: int, batch_in_epoch: int, process: int) -> int:
    """The seed of the dropout draws of one micro-batch of one process."""
    return (mask_seed(seed, epoch, batch_in_epoch) * 65_537 + process) % (2**63)


class _KnownLength:
    """A tokenizer whose `len()` is computed once: the guide's collator asks on every call, and a fast tokenizer
    rebuilds its vocabulary to answer (most of the time it takes to mask a batch)."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer, self._length = tokenizer, len(tokenizer)

    def __len__(self) -> int:
        return self._length

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)


def masking_collator(tokenizer, mlm_probability: float, **kwargs):
    """The guide's `DataCollatorForLanguageModeling`, without the per-call vocabulary rebuild."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(_KnownLength(tokenizer), mlm_probability=mlm_probability, **kwargs)


def word_starts(tokenizer) -> np.ndarray:
    """For each token id, whether it begins a word: WordPiece marks continuing pieces (`##`), byte-level BPE
    and SentencePiece mark starting ones (`Ġ`, `▁`). Special tokens count as starts."""
    vocab = tokenizer.get_vocab()
    counts = {marker: sum(token.startswith(marker) for token in vocab) for marker in ("##", "Ġ", "▁")}
    marker = max(counts, key=counts.get)
    if counts[marker] < 0.05 * len(vocab):
        unknown = "cannot tell where words begin in this tokenizer's vocabulary"
        markers = "neither WordPiece '##' pieces nor a leading-space marker 'Ġ'/'▁'"
        raise UsageError(f"{unknown} ({markers}); train without it", "--whole-word-masking")
    starts = np.ones(len(tokenizer), dtype=bool)
    for token, index in vocab.items():
        if index < len(starts):
            starts[index] = not token.startswith("##") if marker == "##" else token.startswith(marker)
    starts[tokenizer.all_special_ids] = True
    return starts


class WholeWordMasking:
    """transformers' `DataCollatorForWholeWordMask` (run_mlm_wwm.py's). It reads WordPiece spellings, so other
    tokenizers' continuing pieces are shown to it as `##piece` and their special tokens as `[CLS]`."""

    def __init__(self, tokenizer, mlm_probability: float) -> None:
        from transformers import DataCollatorForWholeWordMask

        starts = word_starts(tokenizer)
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        if not any(token.startswith("##") for token in tokens):
            special = set(tokenizer.all_special_ids)
            tokens = [
                "[CLS]" if i in special else token if starts[i] else "##" + token for i, token in enumerate(tokens)
            ]
        self.tokens = np.array(tokens, dtype=object)
        with warnings.catch_warnings():  # deprecated for transformers 5, which has no TensorFlow: pinned < 5.
            # Its successor, DataCollatorForLanguageModeling(whole_word_mask=True), drops the 10% random
            # and 10% kept tokens, and needs character offsets that blocks no longer have.
            warnings.simplefilter("ignore", FutureWarning)
            self.collator = DataCollatorForWholeWordMask(
                _KnownLength(tokenizer), mlm_probability=mlm_probability, return_tensors="np"
            )
        self.collator.seed = 0  # its shuffles draw from the generator given with each call

    def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array(ids, dtype=np.int64)
        self.collator.generator = rng
        with warnings.catch_warnings():  # "only suitable for BertTokenizer-like": the pieces are spelled so
            warnings.simplefilter("ignore", UserWarning)
            chosen = np.array([self.collator._whole_word_mask(list(self.tokens[row])) for row in ids])
        return self.collator.numpy_mask_tokens(ids, chosen)


class BlockMasker:
    """Blocks -> NumPy {"input_ids", "labels"(, "attention_mask")}, for the eval masks and the Keras pipeline."""

    def __init__(self, tokenizer, mlm_probability: float, whole_word: bool = False, padded: bool = False) -> None:
        self.collator = masking_collator(tokenizer, mlm_probability, return_tensors="np")
        self.whole_words = WholeWordMasking(tokenizer, mlm_probability) if whole_word else None
        self.pad_id = tokenizer.pad_token_id if padded else None

    def __call__(self, blocks: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        blocks = np.asarray(blocks)
        batch: dict[str, np.ndarray] = {}
        if self.pad_id is not None:
            batch["attention_mask"] = (blocks != self.pad_id).astype(np.int32)
        if self.whole_words is not None:
            inputs, labels = self.whole_words(blocks, rng)
        else:
            self.collator.generator = rng
            masked = self.collator([{"input_ids": row} for row in blocks])
            inputs, labels = masked["input_ids"], masked["labels"]
        batch.update(input_ids=inputs.astype(np.int32), labels=labels.astype(np.int32))
        return batch


def mask_once(
    blocks: np.ndarray, tokenizer, mlm_probability: float, seed: int, whole_word: bool = False, padded: bool = False
) -> dict[str, np.ndarray]:
    """Mask blocks once with a fixed seed: the frozen inputs of every evaluation, in both frameworks."""
    return BlockMasker(tokenizer, mlm_probability, whole_word, padded)(blocks, np.random.default_rng(seed))


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
        # What was dropped beside the blocks, written first: the blocks file is the one that counts.
        write_text_atomically(path.with_suffix(".json"), json.dumps({"dropped_tokens": grouper.dropped}))
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
    PIECE_CHARS is tokenized in pieces: an encoding costs about 200 bytes a token (a 50 MB row took 8.8 GB)."""
    if max_length:  # only the text's start counts
        short = [text[:PIECE_CHARS] for text in texts]
        return tokenizer(short, truncation=True, max_length=max_length, verbose=False)["input_ids"]
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


def cache_root(config: DataConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("MLM_CACHE_DIR") or Path.home() / ".cache" / "mlm-toolkit")


def _cache_key(texts_digest: str, tokenizer, config: DataConfig) -> str:
    key = hashlib.sha256(f"v{CACHE_VERSION}|{config.block_size}|line-by-line {config.line_by_line}|".encode())
    key.update(tokenizer.backend_tokenizer.to_str().encode())
    key.update(texts_digest.encode())
    return key.hexdigest()[:24]


def cached_blocks(texts, texts_digest: str, tokenizer, config: DataConfig) -> tuple[Blocks, bool]:
    """(blocks, came from cache): tokenized and grouped once per distinct input, then read from the file."""
    name = f"blocks-{_cache_key(texts_digest, tokenizer, config)}.arrow"
    path = cache_root(config) / name
    if path.is_file():
        return Blocks(path), True
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


@dataclass
class MLMData:
    """What a run consumes: train blocks to mask on the fly, and frozen masked held-out blocks."""

    train_blocks: Blocks | None  # None when only evaluating
    eval_inputs: dict[str, np.ndarray]
    texts: dict[str, object]  # where the texts came from and how many (the rows are let go)
    fingerprint: str  # of the train and held-out texts: what identifies the data of a run
    dropped_tokens: int
    from_cache: bool
    eval_blocks_available: int

    @property
    def eval_blocks(self) -> int:
        return len(self.eval_inputs["input_ids"])

    @property
    def text_column(self) -> str:
        return self.texts["text_column"]

    def summary(self) -> dict[str, object]:
        train = self.train_blocks
        return {
            **self.texts,
            "train_blocks": len(train) if train is not None else None,
            "eval_blocks": self.eval_blocks,
            "eval_blocks_available": self.eval_blocks_available,
            "block_size": int(self.eval_inputs["input_ids"].shape[1]),
            "train_tokens": len(train) * train.block_size if train is not None else None,
            "eval_masked_tokens": int((self.eval_inputs["labels"] != -100).sum()),
            "dropped_tokens": self.dropped_tokens,
            "cached": self.from_cache,
        }


def eval_block_count(available: int, config: DataConfig) -> int:
    """How many held-out blocks are evaluated: --max-eval-samples, or all up to EVAL_BLOCKS_CAP."""
    cap = EVAL_BLOCKS_CAP if config.max_eval_samples is None else config.max_eval_samples or available
    if available > cap:
        log.info("evaluating the first %d of %d held-out blocks (--max-eval-samples; 0 evaluates all)", cap, available)
    return min(available, cap)


def frozen_eval_inputs(blocks: Blocks, tokenizer, config: DataConfig, seed: int) -> dict[str, np.ndarray]:
    head = blocks.head(eval_block_count(len(blocks), config))
    return mask_once(head, tokenizer, config.mlm_probability, seed, config.whole_word_masking, config.line_by_line)


def texts_summary(splits: Splits) -> dict[str, object]:
    return {
        "dataset": splits.source,
        "text_column": splits.text_column,
        "held_out": splits.held_out_from,
        "rows": splits.rows,
        "rows_skipped": splits.skipped,
        "train_texts": len(splits.train),
        "eval_texts": len(splits.held_out),
    }


def prepare_data(config: DataConfig, tokenizer, seed: int, train: bool = True) -> MLMData:
    """Texts -> train blocks on disk and masked held-out blocks (`train=False`: these alone); with --streaming,
    the train blocks as the rows stream in (`mlm_toolkit.streaming`)."""
    if config.streaming:
        from mlm_toolkit.streaming import prepare_stream

        return prepare_stream(config, tokenizer, seed)
    splits = load_splits(config, seed)
    held_out_digest = digest(splits.held_out)
    train_digest = digest(splits.train) if train else ""
    parts = [("eval", splits.held_out, held_out_digest)] + ([("train", splits.train, train_digest)] * train)
    made = {name: cached_blocks(texts, sha, tokenizer, config) for name, texts, sha in parts}
    for name, (blocks, _) in made.items():
        if len(blocks) == 0:
            short = f"{blocks.dropped_tokens} tokens, less than one block of {config.block_size}"
            advice = "use more rows (--max-samples) or a smaller --block-size"
            raise UsageError(f"the {name} split has {short}; {advice}", "--dataset")
    train_blocks = made["train"][0] if train else None
    data = MLMData(
        train_blocks,
        frozen_eval_inputs(made["eval"][0], tokenizer, config, seed),
        texts_summary(splits),
        hashlib.sha256(f"{train_digest}|{held_out_digest}".encode()).hexdigest()[:16],
        sum(blocks.dropped_tokens for blocks, _ in made.values()),
        all(cached for _, cached in made.values()),
        len(made["eval"][0]),
    )
    log.info("data: %s", json.dumps(data.summary()))
    return data
