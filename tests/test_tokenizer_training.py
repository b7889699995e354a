"""`train-tokenizer`: a tokenizer of a named kind from a dataset's texts, with an MLM's special tokens, that
`--tokenizer-name` and `AutoTokenizer` load; the same command on both CLIs."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from pt_helpers import TINY_ARGS, run_cli

CORPUS = ("--dataset", "builtin:chatterbot", "--max-samples", "300", "--vocab-size", "600")


@pytest.mark.parametrize(
    "kind, marks, pad_id",
    [
        (["--kind", "wordpiece"], ("[CLS]", "[SEP]", "[MASK]"), 0),
        (["--kind", "bpe"], ("<s>", "</s>", "<mask>"), 1),  # RoBERTa's order: TF's RoBERTa needs padding id 1
        (["--kind", "unigram"], ("<s>", "</s>", "<mask>"), 1),
        (["--like", "builtin:minilm"], ("[CLS]", "[SEP]", "[MASK]"), 0),
    ],
)
def test_each_kind_is_a_tokenizer_an_mlm_can_use(kind, marks, pad_id, tmp_path):
    from transformers import AutoTokenizer

    result = run_cli("train-tokenizer", *CORPUS, *kind, "--output-dir", tmp_path / "tok")
    assert result.exit_code == 0, result.output
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert 100 < len(tokenizer) <= 600
    assert (tokenizer.cls_token, tokenizer.sep_token, tokenizer.mask_token) == marks
    assert tokenizer.pad_token_id == pad_id and tokenizer.unk_token is not None
    ids = tokenizer(f"What is a {tokenizer.mask_token} made of?")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert (tokens[0], tokens[-1]) == marks[:2] and tokens.count(tokenizer.mask_token) == 1
    text = "What is a made of?".lower() if "--like" in kind else "What is a made of?"  # MiniLM's is uncased
    assert tokenizer.decode(ids, skip_special_tokens=True).split() == text.split()


def test_a_trained_tokenizer_pretrains_a_fresh_model_that_fills_masks(eli5_jsonl, tmp_path):
    made = run_cli("train-tokenizer", *CORPUS, "--kind", "bpe", "--output-dir", tmp_path / "tok")
    assert made.exit_code == 0, made.output
    scratch = ("--model-type", "roberta", "--tokenizer-name", tmp_path / "tok", "--max-steps", "1")
    small = ("--config-overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64")
    result = run_cli("train", "--dataset", eli5_jsonl, *TINY_ARGS, *scratch, *small, "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["vocab_size"], config["pad_token_id"]) == (600, 1)
    assert results["from_scratch"] and results["before"]["eval_loss"] == pytest.approx(math.log(600), rel=0.02)
    filled = run_cli("fill-mask", tmp_path / "out", "What is a <mask> made of?", "--json")
    assert filled.exit_code == 0 and len(json.loads(filled.stdout)[0]["masks"][0]) == 5


def test_a_stream_gives_the_same_tokenizer_and_both_clis_make_it(eli5_jsonl, tmp_path):
    from tf_mlm import main as tf_main

    # BPE: the one kind whose training is deterministic (WordPiece's and Unigram's vary on ties, tokenizers#1794)
    data = ("--dataset", eli5_jsonl, "--vocab-size", "400", "--kind", "bpe")
    assert run_cli("train-tokenizer", *data, "--output-dir", tmp_path / "map").exit_code == 0
    assert run_cli("train-tokenizer", *data, "--streaming", "--output-dir", tmp_path / "stream").exit_code == 0
    by_tf = CliRunner().invoke(tf_main, ["train-tokenizer", *map(str, data), "--output-dir", str(tmp_path / "tf")])
    assert by_tf.exit_code == 0, by_tf.output
    made = [json.loads((tmp_path / name / "tokenizer.json").read_text()) for name in ("map", "stream", "tf")]
    assert made[0] == made[1] == made[2] and 300 < len(made[0]["model"]["vocab"]) <= 400


@pytest.mark.parametrize(
    "args, says",
    [
        ([], "--output-dir: name the folder"),
        (["--kind", "bpe", "--like", "builtin:minilm", "--output-dir", "O"], "--like: give --kind or --like"),
        (["--kind", "unigram", "--min-frequency", "3", "--output-dir", "O"], "--min-frequency: unigram keeps"),
        (["--like", "builtin:minilm", "--lowercase", "--output-dir", "O"], "--lowercase: --like keeps"),
        (["--vocab-size", "0", "--output-dir", "O"], "--vocab-size: "),
        (["--like", "/no/such", "--output-dir", "O"], "--like: no such model folder"),
        (["--text-column", "nope", "--output-dir", "O"], "--text-column: "),
    ],
)
def test_bad_settings_are_refused_naming_the_flag(args, says, tmp_path):
    args = [str(tmp_path / "out") if value == "O" else value for value in args]
    result = run_cli("train-tokenizer", "--dataset", "builtin:chatterbot", *args)
    assert result.exit_code == 2 and says in result.output.strip().splitlines()[-1], result.output
    assert not (tmp_path / "out").exists()


def test_a_folder_is_replaced_only_when_asked_and_only_if_it_holds_a_tokenizer(tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")
    refused = run_cli("train-tokenizer", *CORPUS, "--output-dir", out)
    assert refused.exit_code == 2 and "--overwrite-output-dir" in refused.output
    assert (out / "tokenizer.json").read_text() == "{}"
    replaced = run_cli("train-tokenizer", *CORPUS, "--output-dir", out, "--overwrite-output-dir")
    assert replaced.exit_code == 0 and json.loads((out / "tokenizer.json").read_text())["model"]["type"] == "WordPiece"
    (out / "notes.txt").write_text("mine")
    kept = run_cli("train-tokenizer", *CORPUS, "--output-dir", out, "--overwrite-output-dir")
    assert kept.exit_code == 2 and "holds more than a tokenizer (notes.txt)" in kept.output
    assert (out / "notes.txt").read_text() == "mine"
