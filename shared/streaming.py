"""--streaming: blocks grouped as the rows stream in, for corpora larger than disk or memory.

The rows (a `datasets.IterableDataset`, sharded with `split_dataset_by_node`) are tokenized and grouped in
pulls, so the blocks are those of map mode over the same rows. A `StreamPosition` says where a stream stands,
to the block, for a resumed run. A stream that ends before --max-steps begins another pass, as the Trainer's.
The held-out blocks come from the validation source, or else from the first rows, which training skips.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from mlm_toolkit.blocks import EVAL_BLOCKS_CAP, Grouper, pad_examples, token_ids
from mlm_toolkit.config import DataConfig
from mlm_toolkit.data_sources import column_names, held_out_source, open_split, resolve_text_column, texts_of
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.masking import mask_once

log = logging.getLogger(__name__)

ROWS_PER_PULL = 1000


@dataclass
class StreamPosition:
    """Where a stream of blocks stands, to the block; JSON as it is (saved in checkpoints)."""

    passes: int = 0  # passes over the stream completed
    source_state: dict | None = None  # the rows' state_dict() after the last complete pull (None: the start)
    carry: list[int] = field(default_factory=list)  # tokens carried into the pull being given out
    blocks_done: int = 0  # blocks of that pull given out
    given: int = 0  # blocks given out in this pass: the position that seeds a block's mask

    @classmethod
    def from_dict(cls, saved: dict[str, Any] | None) -> "StreamPosition":
        return cls(**saved) if saved else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _token_lists(texts: list[str], tokenizer, config: DataConfig):
    import pyarrow as pa

    ids = token_ids(texts, tokenizer, config.block_size if config.line_by_line else None)
    return pa.array(ids, type=pa.list_(pa.int32()))


def blocks_of_pull(texts: list[str], tokenizer, config: DataConfig, grouper: Grouper) -> np.ndarray:
    """The blocks one pull of rows completes: grouped with what earlier pulls left over, or padded."""
    lists = _token_lists(texts, tokenizer, config)
    if config.line_by_line:
        return pad_examples(lists, config.block_size, tokenizer.pad_token_id)
    return grouper.add(np.asarray(lists.flatten(), dtype=np.int32))


class BlockStream:
    """The train blocks of a stream, each with its pass and position; `position`: after the last one given."""

    def __init__(
        self, open_texts: Callable[[], Any], tokenizer, config: DataConfig, position: StreamPosition | None = None
    ) -> None:
        self.open_texts, self.tokenizer, self.config = open_texts, tokenizer, config
        self.position = position or StreamPosition()

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, int]]:
        start = self.position
        while True:
            texts = self.open_texts()  # a fresh stream each pass: a loaded state applies to one iteration
            if start.source_state is not None:
                texts.load_state_dict(start.source_state)
            grouper = Grouper(self.config.block_size, start.carry)
            state, skip, given, any_block = start.source_state, start.blocks_done, start.given, False
            for pull in texts.iter(batch_size=ROWS_PER_PULL):
                carry = grouper.carry.tolist()
                blocks = blocks_of_pull(pull["text"], self.tokenizer, self.config, grouper)
                for done in range(skip + 1, len(blocks) + 1):
                    given += 1
                    self.position = StreamPosition(start.passes, state, carry, done, given)
                    yield blocks[done - 1], start.passes, given - 1
                any_block = any_block or len(blocks) > 0
                state, skip = texts.state_dict(), 0
            if not any_block and start.given == 0:
                raise RunError("--dataset: the stream holds no complete block of training text")
            log.info("the stream ended after %d blocks; pass %d begins", given, start.passes + 2)
            start = StreamPosition(passes=start.passes + 1)


def first_blocks(texts, tokenizer, config: DataConfig, count: int) -> tuple[np.ndarray, int]:
    """(up to `count` blocks from the start of a stream, the rows they took)."""
    grouper, blocks, rows = Grouper(config.block_size), [], 0
    for pull in texts.iter(batch_size=100):
        blocks.extend(blocks_of_pull(pull["text"], tokenizer, config, grouper))
        rows += len(pull["text"])
        if len(blocks) >= count:
            break
    return np.asarray(blocks[:count], dtype=np.int32).reshape(-1, config.block_size), rows


@dataclass
class StreamData:
    """What a streaming run consumes: how to open this process's train stream, and the frozen held-out inputs."""

    open_train: Callable[[int, int], Any]  # (process index, processes) -> IterableDataset of "text"
    eval_inputs: dict[str, np.ndarray]
    fingerprint: str
    text_column: str
    held_out_from: str
    rows_held_out: int  # rows at the head of the stream that training skips

    @property
    def eval_blocks(self) -> int:
        return len(self.eval_inputs["input_ids"])

    def summary(self) -> dict[str, object]:
        return {
            "streaming": True,
            "text_column": self.text_column,
            "held_out": self.held_out_from,
            "eval_blocks": self.eval_blocks,
            "block_size": int(self.eval_inputs["input_ids"].shape[1]),
            "eval_masked_tokens": int((self.eval_inputs["labels"] != -100).sum()),
            "rows_held_out_of_the_stream": self.rows_held_out,
        }


def prepare_stream(config: DataConfig, tokenizer, seed: int) -> StreamData:
    """The held-out blocks, masked once, and the train stream to open in each process."""
    from datasets.distributed import split_dataset_by_node

    rows = open_split(config, config.train_split, config.max_samples)
    column = resolve_text_column(config, column_names(rows))
    count = EVAL_BLOCKS_CAP if config.max_eval_samples is None else config.max_eval_samples or EVAL_BLOCKS_CAP
    validation, held_out_from = held_out_source(config)
    if validation is not None:
        held_out = texts_of(validation, resolve_text_column(config, column_names(validation)), None)
        eval_blocks, skip = first_blocks(held_out, tokenizer, config, count)[0], 0
    else:
        eval_blocks, skip = first_blocks(texts_of(rows, column, None), tokenizer, config, count)
        held_out_from = f"the first {skip} rows of the stream"
    if len(eval_blocks) == 0:
        raise UsageError(f"{held_out_from} hold less than one block of {config.block_size}", "--dataset")
    log.info("streaming: evaluating on %d blocks of %s", len(eval_blocks), held_out_from)

    def open_train(process: int, processes: int):
        texts = texts_of(open_split(config, config.train_split, config.max_samples), column, None)
        texts = texts.skip(skip) if skip else texts
        return split_dataset_by_node(texts, process, processes) if processes > 1 else texts

    fingerprint = hashlib.sha256(eval_blocks.tobytes())
    first, _ = first_blocks(open_train(0, 1), tokenizer, config, 8)
    fingerprint.update(first.tobytes())  # the stream's start: other data under the same name is caught
    inputs = mask_once(
        eval_blocks, tokenizer, config.mlm_probability, seed, config.whole_word_masking, config.line_by_line
    )
    return StreamData(open_train, inputs, fingerprint.hexdigest()[:16], column, held_out_from, skip)
