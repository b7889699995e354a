"""Pretraining from scratch as run_mlm.py does it: --model-type (with --config-overrides) or --config-name, with
--tokenizer-name; the weights fresh from the seed, then resume, evaluate and fill-mask as for a fine-tune."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from pt_helpers import TINY_ARGS, fake_hub, run_cli

SMALL = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"
STEPS = ("--max-steps", "4", "--checkpointing-steps", "2")


def trained(data: Path, out: Path, *args: str) -> dict:
    """A run with no --model (it trains from scratch) at the tiny sizes."""
    result = run_cli("train", "--dataset", data, "--output-dir", out, *TINY_ARGS, *args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "all_results.json").read_text())


def test_a_fresh_model_type_trains_resumes_and_says_it_started_from_scratch(tiny_bert, eli5_jsonl, tmp_path):
    from transformers import AutoTokenizer

    scratch = ("--model-type", "bert", "--config-overrides", SMALL, "--tokenizer-name", str(tiny_bert))
    out = tmp_path / "out"
    whole = trained(eli5_jsonl, out, *scratch, *STEPS)
    vocabulary = len(AutoTokenizer.from_pretrained(tiny_bert))
    assert whole["from_scratch"] and whole["model"] == "bert from scratch" and not whole["fresh_weights"]
    # Fresh weights predict about uniformly: the loss before training is near ln(vocabulary).
    assert whole["before"]["eval_loss"] == pytest.approx(math.log(vocabulary), rel=0.02)
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == ("bert", 32, vocabulary)
    card = (out / "README.md").read_text()
    assert "trained from scratch (`bert from scratch`: every weight initialised from the seed)" in card
    assert "base_model" not in card.split("---")[1]
    for line in ("- seed: 42", "- train_batch_size: 8", "- total_train_batch_size: 8", "- max_grad_norm: 1.0"):
        assert line in card, line
    assert "- optimizer: AdamW with betas=(0.9,0.999), epsilon=1e-08 and weight decay 0.01" in card

    crashed = tmp_path / "crashed"  # stopped after checkpoint-2: the same fresh weights, the same losses
    shutil.copytree(out, crashed, ignore=shutil.ignore_patterns("checkpoint-4", "all_results.json"))
    resumed = trained(eli5_jsonl, crashed, *scratch, *STEPS, "--resume", "auto")
    assert resumed["loss_log"]["losses"] == whole["loss_log"]["losses"]
    evaluated = run_cli("evaluate", out, "--json")
    assert json.loads(evaluated.stdout)["eval_loss"] == pytest.approx(whole["after"]["eval_loss"], rel=1e-5)
    filled = run_cli("fill-mask", out, "the cat [MASK] the ball.")
    assert filled.exit_code == 0 and "the cat" in filled.output


def test_a_named_config_trains_from_scratch_with_its_own_tokenizer(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    results = trained(eli5_jsonl, out, "--config-name", str(tiny_roberta), "--max-steps", "1")
    assert results["from_scratch"] and results["model"] == f"{tiny_roberta} (its config) from scratch"
    vocabulary = json.loads((out / "config.json").read_text())["vocab_size"]
    assert results["before"]["eval_loss"] == pytest.approx(math.log(vocabulary), rel=0.02)


def test_a_run_from_scratch_pushes_as_a_fine_tune_does(tiny_bert, eli5_jsonl, tmp_path, monkeypatch):
    hub = fake_hub(monkeypatch)
    scratch = ("--model-type", "bert", "--config-overrides", SMALL, "--tokenizer-name", str(tiny_bert))
    push = ("--push-to-hub", "--hub-model-id", "me/fresh", "--hub-token", "hf_given", "--max-steps", "2")
    trained(eli5_jsonl, tmp_path / "out", *scratch, *push)
    message, files, _ = hub.uploads[-1]
    assert hub.repos == [("me/fresh", False, True)] and message.startswith("pt-mlm: perplexity")
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "all_results.json"} <= set(files)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "trained from scratch" in card and "base_model" not in card.split("---")[1]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--config-overrides", "hidden_size=32"], "--config-overrides: needs --model-type"),
        (["--model-type", "bert"], "--tokenizer-name: a fresh --model-type needs a tokenizer"),
        (["--model-type", "gpt2", "--tokenizer-name", "T"], "--model-type: 'gpt2' is not a masked-LM type"),
        (
            ["--model-type", "bert", "--tokenizer-name", "T", "--config-overrides", "hidden_sise=8"],
            "--config-overrides: ",
        ),
        (["--model-type", "bert", "--config-name", "T"], "--config-name: give --model-type or --config-name"),
        (
            ["--model-type", "bert", "--tokenizer-name", "T", "--model", "x/y"],
            "--model-type: give --model to fine-tune",
        ),
    ],
)
def test_from_scratch_settings_are_checked_naming_the_flag(args, says, tiny_bert, eli5_jsonl, tmp_path):
    args = [str(tiny_bert) if value == "T" else value for value in args]
    result = run_cli("train", "--dataset", eli5_jsonl, "--output-dir", tmp_path / "out", *args)
    assert result.exit_code == 2 and says in result.output.strip().splitlines()[-1], result.output
    assert not (tmp_path / "out").exists()
