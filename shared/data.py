"""What a run consumes: texts to train blocks on disk and frozen masked held-out blocks (`prepare_data`).

The held-out blocks are masked once with a fixed seed: a checkpoint always gets the same perplexity, in either
framework.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np

from mlm_toolkit.blocks import EVAL_BLOCKS_CAP, Blocks, cached_blocks
from mlm_toolkit.config import DataConfig
from mlm_toolkit.data_sources import Splits, digest, load_splits
from mlm_toolkit.errors import UsageError
from mlm_toolkit.masking import mask_once

log = logging.getLogger(__name__)


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
        if not blocks.holds_other_than(tokenizer.all_special_ids):  # 0 masked tokens: a loss of 0/0
            only = f"the {name} split holds only special tokens ({', '.join(tokenizer.all_special_tokens)})"
            raise UsageError(f"{only}: nothing in it can be masked; check --text-column", "--dataset")
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
    if not (data.eval_inputs["labels"] != -100).any():
        raise UsageError("no held-out token was masked; use more rows or a higher --mlm-probability", "--dataset")
    log.info("data: %s", json.dumps(data.summary()))
    return data
