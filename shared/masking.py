"""Blocks to masked inputs: the guide's collator, whole-word masking, and seeds that make each mask a
function of its block's place in the run (a resumed run masks as an uninterrupted one).
"""

from __future__ import annotations

import warnings

import numpy as np

from mlm_toolkit.errors import UsageError


def mask_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the mask of the block at `position` of epoch `epoch`'s order (or of a stream's pass)."""
    return (seed * 1_000_003 + epoch * 10_000_019 + position) % (2**63)


def block_order(seed: int, epoch: int, num_blocks: int) -> np.ndarray:
    """The order in which epoch `epoch` reads the blocks: a permutation seeded by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_blocks)


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
