"""The model matrix in PyTorch: every family of `tiny_models.FAMILIES` trains, resumes exactly after a crash,
evaluates, fills masks and loads as transformers loads it, with the sparse head giving the dense loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pt_helpers import pt_train_command, run_cli
from tiny_models import FAMILIES, build_tiny_family

STEPS = ("--max-steps", "4", "--checkpointing-steps", "2")


def trained(args) -> dict:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return json.loads((Path(args[args.index("--output-dir") + 1]) / "all_results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_trains_resumes_exactly_and_loads(family, tiny_bert, eli5_jsonl, tmp_path):
    from transformers import AutoModelForMaskedLM, pipeline

    from pt_mlm.model import MaskedTokenLoss

    model = build_tiny_family(family, tmp_path / family, tiny_bert)
    out = tmp_path / "run"
    whole = trained(pt_train_command(model, eli5_jsonl, out, *STEPS))

    # A crash after step 2's checkpoint: the newest checkpoint and the results never written.
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed, ignore=shutil.ignore_patterns("checkpoint-4", "all_results.json"))
    resumed = trained(pt_train_command(model, eli5_jsonl, crashed, *STEPS, "--resume", "auto"))
    assert resumed["loss_log"]["losses"] == whole["loss_log"]["losses"], "resumed: the uninterrupted run's losses"
    assert resumed["after"]["eval_loss"] == whole["after"]["eval_loss"]

    evaluated = run_cli("evaluate", out, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["eval_loss"] == pytest.approx(whole["after"]["eval_loss"], rel=1e-5)
    filled = run_cli("fill-mask", out, "the cat <mask> the ball.", "--top-k", "2")
    assert filled.exit_code == 0 and "the cat" in filled.output, filled.output

    for folder in (out, out / "checkpoint-2"):  # each loads as transformers loads a Trainer's folders
        loaded, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        predictions = pipeline("fill-mask", model=str(folder), top_k=2)("the cat [MASK] the ball.")
        assert len(predictions) == 2 and all(0 <= p["score"] <= 1 for p in predictions)

    # The sparse head applies to the family and loses exactly what the full head loses.
    loaded = loaded.eval()
    ids = torch.randint(5, loaded.config.vocab_size - 1, (2, 32), generator=torch.Generator().manual_seed(0))
    labels = torch.where(torch.rand(2, 32, generator=torch.Generator().manual_seed(1)) < 0.3, ids, -100)
    with torch.no_grad():
        sparse_net = MaskedTokenLoss(loaded, {"input_ids": ids, "labels": labels})
        sparse, _ = sparse_net(input_ids=ids, labels=labels)
        dense, _ = MaskedTokenLoss(loaded)(input_ids=ids, labels=labels)
    assert sparse_net.sparse, sparse_net.dense_reason
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_the_default_attention_is_the_familys_and_an_unsupported_one_is_refused(tiny_bert, eli5_jsonl, tmp_path):
    """ELECTRA has no SDPA in transformers: by default it runs eager; --attention sdpa is refused naming it."""
    model = build_tiny_family("electra", tmp_path / "electra", tiny_bert)
    refused = run_cli(
        *pt_train_command(model, eli5_jsonl, tmp_path / "sdpa", "--max-steps", "1", "--attention", "sdpa")
    )
    assert refused.exit_code == 2
    assert (
        "--attention: electra models have no sdpa attention in transformers; use --attention eager" in refused.output
    )
    assert not (tmp_path / "sdpa").exists()
    results = trained(pt_train_command(model, eli5_jsonl, tmp_path / "default", "--max-steps", "1"))
    assert results["config"]["pt"]["attention"] is None and results["optimizer_steps"] == 1


def test_an_encoder_decoder_model_is_refused_in_one_line(tiny_bert, eli5_jsonl, tmp_path):
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    config = BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1)
    config.update(dict(encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32))
    BartForConditionalGeneration(config).save_pretrained(tmp_path / "bart")
    tokenizer.save_pretrained(tmp_path / "bart")
    result = run_cli(*pt_train_command(tmp_path / "bart", eli5_jsonl, tmp_path / "out", "--max-steps", "1"))
    assert (
        result.exit_code == 2 and "--model:" in result.output and "is an encoder-decoder (bart) model" in result.output
    )


# The families transformers has in TensorFlow whose TF class takes labels (TF XLM and FlauBERT do not).
TF_FAMILIES = sorted(set(FAMILIES) - {"big_bird", "ernie", "fnet", "modernbert", "xlm", "flaubert"})
# One TensorFlow process each, of about equal time on 2 cores, to even out the pytest workers.
# One layer each (a family's layers are one class, repeated; tracing is most of a tiny TF run): ALBERT keeps two,
# sharing one layer's weights, and Funnel its blocks.
TF_BUILT = {family: dict(num_hidden_layers=1) for family in TF_FAMILIES if family not in ("albert", "funnel")}
TF_BUILT["longformer"] = dict(num_hidden_layers=1, attention_window=[8])
TF_GROUPS = [
    ["albert", "deberta-v2", "longformer"],
    ["bert", "camembert", "convbert", "deberta"],
    ["distilbert", "electra", "esm", "funnel"],
    ["mobilebert", "mpnet", "roberta", "roformer", "xlm-roberta"],
]
# transformers' TF RoBERTa classes count positions from padding index 1, as their checkpoints pad: built with
# the RoBERTa tokenizer (a pad of 0 is refused, below). TF ESM predicts otherwise once trained: refused.
TF_PAD_ONE = {"camembert", "longformer", "roberta", "xlm-roberta"}
TF_REFUSED = {"esm": "transformers' TensorFlow and PyTorch esm models predict otherwise from the same trained weights"}


def test_the_tf_groups_hold_every_tf_family_once():
    assert sorted(family for group in TF_GROUPS for family in group) == TF_FAMILIES


def test_a_tensorflow_model_that_pytorch_would_read_otherwise_is_named():
    from transformers import AutoConfig

    from mlm_toolkit.convert import pytorch_would_differ

    reason = pytorch_would_differ(AutoConfig.for_model("xlm-roberta", pad_token_id=0))
    assert reason == (
        "transformers' TensorFlow xlm-roberta counts positions from padding index 1, "
        "and this model's pad_token_id is 0"
    )
    assert pytorch_would_differ(AutoConfig.for_model("roberta", pad_token_id=1)) is None
    assert pytorch_would_differ(AutoConfig.for_model("bert", pad_token_id=0)) is None


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("families", TF_GROUPS, ids="+".join)
def test_every_tf_family_trains_evaluates_fills_masks_and_loads_in_pytorch(
    families, tiny_bert, tiny_roberta, eli5_jsonl, tmp_path
):
    import warm
    from pt_helpers import child_env
    from test_tf_train import scenario
    from transformers import AutoModelForMaskedLM, pipeline

    tokenizers = {family: tiny_roberta if family in TF_PAD_ONE else tiny_bert for family in families}
    built = [
        build_tiny_family(family, tmp_path / "models" / family, tokenizers[family], **TF_BUILT.get(family, {}))
        for family in families
    ]
    folders = [str(folder) for folder in built]
    seen = scenario("model_matrix", ",".join(folders), eli5_jsonl, tmp_path / "runs")
    assert seen.pop("torch imported") is False, "PyTorch's model.safetensors is read into TensorFlow without torch"
    for family in set(families) & set(TF_REFUSED):  # before training: no folder
        how = "train it with pt-mlm (the same flags), or give --no-pt-weights for TensorFlow weights alone"
        assert seen.pop(family) == {"refused": f"--model: {TF_REFUSED[family]}; {how}"}
        assert not (tmp_path / "runs" / family).exists()
    # The product's TF -> PyTorch conversion, for all the group's runs in one PyTorch process.
    outs = {family: tmp_path / "runs" / family for family in seen}
    args = [
        a
        for family, out in outs.items()
        for a in (out, tmp_path / "runs" / f"{family}.keras-weights.safetensors", 1e-3)
    ]
    code = "import sys\nfrom mlm_toolkit.convert import _TO_PT\nargs = sys.argv[1:]\n"
    code += "for at in range(0, len(args), 3):\n    sys.argv[1:] = args[at : at + 3]\n    exec(_TO_PT)"
    done = warm.run("pt", ["-c", code, *args], child_env())
    assert done.returncode == 0, done.stderr[-2000:]
    for family, out in outs.items():
        figures = seen[family]
        assert figures["steps"] == [1, 2] and figures["after"] < figures["before"], family
        # Traced once: no variable is made inside the step (a dropout generator would make tf.function trace it
        # twice: Longformer's did).
        assert figures["step_traces"] == 1, family
        # Traced without autograph: Longformer's one call that branches on a tensor converted alone (compat).
        assert figures["plain_refused"] == 0, family
        # Crashed after step 1 and resumed from its backup: the uninterrupted run's losses, exactly.
        assert figures["resumed_losses"] == figures["losses"], family
        assert figures["resumed_after"] == figures["after"], family
        assert figures["evaluated"] == pytest.approx(figures["after"], rel=1e-5), family
        assert len(figures["filled"]) == 2, family
        assert figures["sparse_differs"] is None, (family, figures["sparse_differs"])
        assert figures["sparse_loss"] == pytest.approx(figures["dense_loss"], rel=1e-5), family
        model, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"], (family, info)
        with torch.no_grad():
            logits = model.eval()(input_ids=torch.tensor(figures["probe_ids"])).logits[0, :4]
        torch.testing.assert_close(logits, torch.tensor(figures["logits"]), rtol=1e-4, atol=1e-4, msg=family)
        filler = pipeline("fill-mask", model=str(out), top_k=2)
        assert len(filler(f"the cat {filler.tokenizer.mask_token} the ball.")) == 2
