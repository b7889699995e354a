"""group_into_blocks and the cached, seeded data pipeline."""

import time

import numpy as np
import pytest

from mlm_toolkit.blocks import cached_blocks, group_into_blocks, mask_once, masking_collator, prepare_data
from mlm_toolkit.config import DataConfig
from mlm_toolkit.errors import UsageError


def test_exact_blocks_and_remainder_dropped():
    blocks, dropped = group_into_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]], 4)
    assert blocks.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert dropped == 2  # tokens 9 and 10: the guide drops the final remainder only


def test_matches_the_guides_group_texts():
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 100, rng.integers(1, 40)).tolist() for _ in range(50)]
    concatenated = sum(lists, [])  # the guide's (quadratic) way, fine for 50 lists
    total = (len(concatenated) // 16) * 16
    expected = [concatenated[i : i + 16] for i in range(0, total, 16)]
    blocks, dropped = group_into_blocks(lists, 16)
    assert blocks.tolist() == expected
    assert dropped == len(concatenated) - total


def test_fewer_tokens_than_one_block_gives_no_blocks():
    blocks, dropped = group_into_blocks([[1, 2], [3]], 8)
    assert blocks.shape == (0, 8) and dropped == 3


def test_a_million_tokens_group_in_well_under_a_second():
    lists = [list(range(100))] * 10_000  # 1M tokens in 10k rows: quadratic concatenation would take minutes
    start = time.perf_counter()
    blocks, _ = group_into_blocks(lists, 128)
    assert time.perf_counter() - start < 1.0
    assert blocks.shape == (1_000_000 // 128, 128)


def test_blocks_are_cached_and_reused(tiny_roberta, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    config = DataConfig(dataset="x", block_size=16, cache_dir=str(tmp_path))
    texts = ["the cat sees the ball"] * 20
    first, _, cached = cached_blocks(texts, tokenizer, config)
    again, _, cached_again = cached_blocks(texts, tokenizer, config)
    other, _, cached_other = cached_blocks(texts + ["a dog"], tokenizer, config)
    assert (cached, cached_again, cached_other) == (False, True, False)
    np.testing.assert_array_equal(first, again)
    assert len(list(tmp_path.glob("blocks-*.npz"))) == 2


def test_eval_masking_is_seeded_and_follows_the_collator(tiny_roberta):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    blocks = np.random.default_rng(0).integers(5, len(tokenizer), (64, 32))
    a, b = mask_once(blocks, tokenizer, 0.15, seed=1), mask_once(blocks, tokenizer, 0.15, seed=1)
    c = mask_once(blocks, tokenizer, 0.15, seed=2)
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert (a["labels"] != c["labels"]).any()
    masked = a["labels"] != -100
    assert 0.10 < masked.mean() < 0.20  # 15% of tokens carry a label
    np.testing.assert_array_equal(a["labels"][masked], blocks[masked])
    assert 0.7 < (a["input_ids"][masked] == tokenizer.mask_token_id).mean() < 0.9  # 80% become <mask>


@pytest.mark.parametrize("tensors", ["np", "pt"])
def test_the_faster_collator_masks_exactly_as_the_guides(tiny_roberta, tensors):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    tokenizer.add_tokens(["<extra>"])  # an added token: len() differs from the base vocabulary size
    blocks = np.random.default_rng(0).integers(5, len(tokenizer), (16, 32))
    examples = [{"input_ids": row} for row in blocks]
    guide = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=7, return_tensors=tensors)(
        examples
    )
    ours = masking_collator(tokenizer, 0.15, seed=7, return_tensors=tensors)(examples)
    for key in ("input_ids", "labels"):
        np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(guide[key]))
    assert (np.asarray(ours["labels"]) != -100).any()


def test_prepare_data_on_the_eli5_jsonl(tiny_roberta, eli5_jsonl):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    data = prepare_data(DataConfig(dataset=str(eli5_jsonl), block_size=32), tokenizer, seed=42)
    summary = data.summary()
    assert summary["train_texts"] == 160 and summary["eval_texts"] == 40  # 80/20 of 200 rows
    assert data.train_blocks.shape[1] == 32 and summary["dropped_tokens"] < 64


def test_too_little_text_for_one_block_is_a_clear_error(tiny_roberta, eli5_jsonl):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    with pytest.raises(UsageError, match="--dataset.*less than one block"):
        prepare_data(DataConfig(dataset=str(eli5_jsonl), max_samples=4, block_size=128), tokenizer, seed=42)
