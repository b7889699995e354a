"""group_into_blocks and the cached, seeded data pipeline."""

import numpy as np
import pytest

from mlm_toolkit.blocks import cached_blocks, group_into_blocks
from mlm_toolkit.config import DataConfig
from mlm_toolkit.data import prepare_data
from mlm_toolkit.errors import UsageError
from mlm_toolkit.masking import mask_once, masking_collator


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


def test_a_million_tokens_group_into_exact_blocks():
    lists = [list(range(100))] * 10_000  # 1M tokens in 10k rows: quadratic concatenation would take minutes
    blocks, dropped = group_into_blocks(lists, 128)
    assert blocks.shape == (1_000_000 // 128, 128) and dropped == 1_000_000 % 128
    assert blocks[0].tolist() == list(range(100)) + list(range(28))
    assert blocks[-1].tolist() == (list(range(100)) * 3)[-dropped - 128 : -dropped]


def text_dataset(texts):
    import datasets

    return datasets.Dataset.from_dict({"text": texts})


def test_blocks_are_cached_and_reused(tiny_roberta, tmp_path):
    from transformers import AutoTokenizer

    from mlm_toolkit.data_sources import digest

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    config = DataConfig(dataset="x", block_size=16, cache_dir=str(tmp_path))
    texts = text_dataset([f"the cat sees the ball number {i}" for i in range(50)])
    more = text_dataset(list(texts["text"]) + ["a dog"])
    first, cached = cached_blocks(texts, digest(texts), tokenizer, config)
    again, cached_again = cached_blocks(texts, digest(texts), tokenizer, config)
    other, cached_other = cached_blocks(more, digest(more), tokenizer, config)
    assert (cached, cached_again, cached_other) == (False, True, False)
    assert len(list(tmp_path.glob("blocks-*.arrow"))) == 2
    # The same blocks as grouping the token lists in memory, read back from the file.
    expected, dropped = group_into_blocks(tokenizer(list(texts["text"]))["input_ids"], 16)
    np.testing.assert_array_equal(np.asarray(again), expected)
    np.testing.assert_array_equal(np.stack([again[i] for i in range(-len(again), 0)]), expected)
    assert again.dropped_tokens == dropped and len(again) == len(expected)
    np.testing.assert_array_equal(again[1:9:3], expected[1:9:3])
    assert not again[3].flags.writeable  # a block read is not a way to change the cache
    assert again.dataset.num_rows == len(expected)


def test_blocks_across_record_batches_read_back_in_any_order(tmp_path):
    """Blocks written from token lists that do not align with blocks, in several record batches: every row
    read back, in a shuffled order and as one head, is the row of the corpus concatenated."""
    from mlm_toolkit.blocks import Blocks, write_blocks

    tokens = np.random.default_rng(0).integers(0, 50_000, 1_000_000, dtype=np.int32)
    lists = [pa_list(tokens[i : i + 100_003]) for i in range(0, len(tokens), 100_003)]
    write_blocks(iter(lists), tmp_path / "blocks.arrow", 128, pad_id=None)
    blocks = Blocks(tmp_path / "blocks.arrow")
    expected = tokens[: len(tokens) // 128 * 128].reshape(-1, 128)
    assert blocks.shape == expected.shape and blocks.dropped_tokens == len(tokens) % 128
    for index in np.random.default_rng(1).permutation(len(blocks)):
        np.testing.assert_array_equal(blocks[int(index)], expected[index])
    np.testing.assert_array_equal(blocks.head(len(blocks)), expected)
    np.testing.assert_array_equal(blocks.head(1000), expected[:1000])


def pa_list(values: np.ndarray):
    """One Arrow ListArray holding `values` as a single row of tokens."""
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), pa.array(values))


def test_parallel_tokenizing_gives_the_same_blocks(tiny_roberta, eli5_jsonl, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    one, two = (
        prepare_data(
            DataConfig(
                dataset=str(eli5_jsonl),
                block_size=32,
                preprocessing_num_workers=workers,
                cache_dir=str(tmp_path / str(workers)),
            ),
            tokenizer,
            seed=42,
        )
        for workers in (None, 2)
    )
    np.testing.assert_array_equal(np.asarray(one.train_blocks), np.asarray(two.train_blocks))
    np.testing.assert_array_equal(one.eval_inputs["labels"], two.eval_inputs["labels"])
    assert one.fingerprint == two.fingerprint


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
    guide = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=7, return_tensors=tensors)(examples)
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


def test_frozen_eval_masks_are_the_guides_collator_with_the_seed(tiny_roberta):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    blocks = np.random.default_rng(0).integers(5, len(tokenizer), (32, 16))
    guide = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=3, return_tensors="np")(
        [{"input_ids": row} for row in blocks]
    )
    ours = mask_once(blocks, tokenizer, 0.15, seed=3)
    for key in ("input_ids", "labels"):
        np.testing.assert_array_equal(ours[key], guide[key])


def test_line_by_line_pads_each_row_and_padding_never_counts(tiny_roberta, tmp_path):
    from tiny_models import tiny_corpus
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    lines = tmp_path / "lines.txt"
    # Rows of several lengths; the last one longer than a block.
    rows = [line if i % 2 else line.split(" because")[0] for i, line in enumerate(tiny_corpus(80))]
    rows.append("the cat " * 40)
    lines.write_text("\n".join(rows) + "\n\n   \n")
    config = DataConfig(dataset=str(lines), block_size=24, line_by_line=True, test_size=0.25)
    data = prepare_data(config, tokenizer, seed=1)
    train, pad = np.asarray(data.train_blocks), tokenizer.pad_token_id
    assert len(train) + data.eval_blocks == len(rows), "one example per non-empty line, empty ones skipped"
    expected = {tuple(tokenizer(r, truncation=True, max_length=24)["input_ids"]) for r in rows}
    assert {tuple(row[row != pad]) for row in train} <= expected  # each row alone, truncated, then padded
    assert (train == pad).any() and (train[:, 0] == tokenizer.bos_token_id).all()
    inputs = data.eval_inputs
    original = np.where(inputs["labels"] != -100, inputs["labels"], inputs["input_ids"])
    assert (inputs["attention_mask"] == (original != pad)).all(), "attention on the example, none on padding"
    padding = inputs["attention_mask"] == 0
    assert padding.any() and (inputs["labels"][padding] == -100).all(), "no label on padding"
    assert (inputs["labels"] != -100).sum() > 0


def test_a_truncating_call_leaves_the_tokenizer_as_it_was_and_keys_the_cache_alike(tiny_roberta, eli5_jsonl, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    before = tokenizer.backend_tokenizer.to_str()
    config = DataConfig(dataset=str(eli5_jsonl), block_size=24, line_by_line=True, cache_dir=str(tmp_path))
    assert not prepare_data(config, tokenizer, seed=1).from_cache
    assert tokenizer.backend_tokenizer.to_str() == before, "the run saves this tokenizer beside its model"
    # A tokenizer saved with a call's truncation on it (as runs saved theirs before) gives the same ids.
    saved_so = AutoTokenizer.from_pretrained(tiny_roberta)
    saved_so.backend_tokenizer.enable_truncation(24)
    assert prepare_data(config, saved_so, seed=1).from_cache, "the same blocks under the same key"


@pytest.mark.parametrize("fixture", ["tiny_roberta", "tiny_bert"])
def test_whole_word_masking_masks_every_piece_of_a_chosen_word(fixture, request):
    from tiny_models import tiny_corpus
    from transformers import AutoTokenizer

    from mlm_toolkit.masking import WholeWordMasking, word_starts

    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    # Words the tiny vocabularies split into pieces ("teachers", "redder") beside whole ones.
    text = " ".join(line.replace("er ", "ers ").replace("red", "redder") for line in tiny_corpus(200))
    ids = np.array(tokenizer(text, verbose=False)["input_ids"][: 64 * 32]).reshape(64, 32)
    starts = word_starts(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(ids.flatten().tolist())
    # BERT continues a word with ##, byte-level BPE begins one with a space (Ġ)
    marker = "##" if fixture == "tiny_bert" else "Ġ"
    assert any(t.startswith(marker) for t in tokens) and any(not t.startswith(marker) for t in tokens[1:])
    inputs, labels = WholeWordMasking(tokenizer, 0.15)(ids, np.random.default_rng(0))
    masked = labels != -100
    assert 0.10 < masked.mean() < 0.20  # the guide's share of tokens
    np.testing.assert_array_equal(labels[masked], ids[masked])
    # A word is every token from a start up to the next start: within it, all masked or none.
    special = np.isin(ids, tokenizer.all_special_ids)
    begins = starts[ids] | np.roll(special, 1, axis=1)
    begins[:, 0] = True
    words = np.cumsum(begins, axis=1)
    for row in range(len(ids)):
        for word in np.unique(words[row][masked[row]]):
            members = (words[row] == word) & ~special[row]
            assert masked[row][members].all(), tokenizer.convert_ids_to_tokens(ids[row][members].tolist())
    several = [w for r in range(len(ids)) for w in np.unique(words[r][masked[r]]) if (words[r] == w).sum() > 1]
    assert several, "some masked words have several pieces"
    assert 0.7 < (inputs[masked] == tokenizer.mask_token_id).mean() < 0.9  # 80% become the mask token
    if fixture == "tiny_bert":  # WordPiece: the masks of transformers' own collator, draw for draw
        from transformers import DataCollatorForWholeWordMask

        theirs = DataCollatorForWholeWordMask(tokenizer, mlm_probability=0.15, return_tensors="np", seed=0)
        theirs.generator = np.random.default_rng(0)
        masked_by_them = theirs([{"input_ids": row} for row in ids])
        np.testing.assert_array_equal(masked_by_them["input_ids"], inputs)
        np.testing.assert_array_equal(masked_by_them["labels"], labels)


def test_max_eval_samples_caps_the_held_out_blocks(tiny_roberta, eli5_jsonl, caplog):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    full = prepare_data(DataConfig(dataset=str(eli5_jsonl), block_size=32), tokenizer, seed=42)
    caplog.set_level("INFO")
    capped = prepare_data(DataConfig(dataset=str(eli5_jsonl), block_size=32, max_eval_samples=10), tokenizer, 42)
    assert full.eval_blocks > 10 == capped.eval_blocks
    assert capped.summary()["eval_blocks_available"] == full.eval_blocks
    assert f"evaluating the first 10 of {full.eval_blocks} held-out blocks" in caplog.text


@pytest.mark.parametrize("fixture", ["tiny_roberta", "tiny_bert"])
def test_a_text_longer_than_a_piece_gives_the_ids_of_the_whole_text(fixture, request, monkeypatch):
    from tiny_models import tiny_corpus
    from transformers import AutoTokenizer

    from mlm_toolkit import blocks

    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    long, short = " ".join(tiny_corpus(300)), "the cat sees a dog."
    whole = tokenizer([long, short], verbose=False)["input_ids"]
    monkeypatch.setattr(blocks, "PIECE_CHARS", 500)  # about 40 pieces, each cut before a space
    assert len(list(blocks.pieces(long))) > 30 and "".join(blocks.pieces(long)) == long
    pieced = blocks.token_ids([long, short], tokenizer)
    assert [list(ids) for ids in pieced] == whole
    truncated = blocks.token_ids([long], tokenizer, max_length=32)
    assert truncated == tokenizer([long], truncation=True, max_length=32, verbose=False)["input_ids"]
