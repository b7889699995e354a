"""`pt-mlm train` end to end on tiny models: learning, saving, reloading, accumulation, bf16, resume."""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import warm
from pt_helpers import (
    child_env,
    fake_hub,
    load_state,
    newest_step,
    pt_mlm_batches,
    pt_train_command,
    run_child,
    run_cli,
    train_tiny,
)

from mlm_toolkit.config import BUILTIN_DATASET, DataConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tiny_roberta, eli5_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("pt-run") / "out"
    results = train_tiny(tiny_roberta, eli5_jsonl, out, "--num-epochs", "2", "--report-to", "tensorboard")
    return out, results


def test_eval_loss_falls_and_the_run_describes_itself(trained):
    out, results = trained
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"] - 0.5
    assert results["after"]["perplexity"] == pytest.approx(np.exp(results["after"]["eval_loss"]))
    per_epoch = -(-results["data"]["train_blocks"] // 8)  # batches of 8, the last one partial
    assert results["optimizer_steps"] == 2 * per_epoch
    assert [e["step"] for e in results["loss_log"]["evals"]] == [0, per_epoch, 2 * per_epoch]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not (out / "tf_model.h5").exists(), "no pickle, no Keras unasked"
    assert "perplexity" in (out / "README.md").read_text()
    assert list((out / "runs").rglob("events.out.tfevents*")), "tensorboard logs were asked for"
    assert newest_step(out) == 2 * per_epoch


def test_a_log_gets_a_progress_line_every_log_every_steps_with_the_eta(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"  # a child's output is a pipe, as a log file or CI is: no live bar
    run = run_child(*pt_train_command(tiny_roberta, eli5_jsonl, out), "--max-steps", "20", "--log-every", "7")
    assert run.exit_code == 0, run.output
    per_epoch = json.loads((out / "all_results.json").read_text())["steps_per_epoch"]
    assert per_epoch > 20
    progress = [line for line in run.output.splitlines() if " step " in line and " ETA " in line]
    assert [int(line.split(" step ")[1].split("/")[0]) for line in progress] == [1, 7, 14]
    assert f"step 7/20 (epoch {round(7 / per_epoch, 2):g}): loss" in progress[1]
    assert f"epoch {round(20 / per_epoch, 2):g}: eval loss" in run.output  # not "epoch 1" after 20 steps
    for stage in ("saving the model and tokenizer", "writing the model card"):
        assert stage in run.output


def test_evaluate_gives_the_runs_own_figure_printed_and_as_json(trained, eli5_jsonl, tmp_path):
    out, results = trained
    args = ["evaluate", out, "--dataset", eli5_jsonl, "--block-size", "32"]
    printed = run_cli(*args)
    assert printed.exit_code == 0, printed.output
    after = results["after"]
    assert f"perplexity: {after['perplexity']:.2f} (eval loss {after['eval_loss']:.4f})" in printed.output
    written = run_cli(*args, "--json", "--output-file", tmp_path / "eval.json")
    figures = json.loads(written.stdout)
    assert figures == json.loads((tmp_path / "eval.json").read_text())
    assert figures["eval_loss"] == pytest.approx(after["eval_loss"], rel=1e-6)
    assert figures["eval_blocks"] == results["data"]["eval_blocks"] and figures["framework"] == "pytorch"
    again = run_cli(*args, "--output-file", tmp_path / "eval.json")
    assert again.exit_code == 2 and again.output.strip().splitlines()[-1].startswith("Error: --output-file:")


def test_masked_token_accuracy_is_the_argmax_over_the_frozen_masks(trained, eli5_jsonl):
    """eval_accuracy as run_mlm.py computes it: the share of masked tokens whose argmax is the label,
    recomputed here with plain transformers on the run's own frozen held-out masks."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mlm_toolkit.data import prepare_data

    out, results = trained
    data = prepare_data(DataConfig(dataset=str(eli5_jsonl), block_size=32), AutoTokenizer.from_pretrained(out), 42)
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(data.eval_inputs["input_ids"]).long()).logits
    labels = torch.from_numpy(data.eval_inputs["labels"]).long()
    masked = labels != -100
    expected = (logits.argmax(-1)[masked] == labels[masked]).float().mean().item()
    after, before = results["after"]["accuracy"], results["before"]["accuracy"]
    assert after == pytest.approx(expected, abs=1e-6) and 0 <= before < after <= 1
    assert results["eval_accuracy"] == after
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] == after
    assert [e["accuracy"] for e in results["loss_log"]["evals"]][-1] == after
    assert "Masked-token accuracy" in (out / "README.md").read_text()


def test_evaluate_on_a_run_folder_alone_uses_the_runs_own_data_settings(trained):
    out, results = trained
    alone = run_cli("evaluate", out, "--json")  # the run's dataset is no default: run_config.yaml says it
    assert alone.exit_code == 0, alone.output
    assert f"evaluating on the run's own data settings ({out / 'run_config.yaml'})" in alone.stderr
    figures = json.loads(alone.stdout)
    assert figures["eval_loss"] == pytest.approx(results["after"]["eval_loss"], rel=1e-6)
    assert figures["accuracy"] == pytest.approx(results["after"]["accuracy"], abs=1e-9)
    printed = run_cli("evaluate", out)
    assert f"accuracy {results['after']['accuracy']:.4f} on" in printed.output
    assert figures["eval_blocks"] == results["data"]["eval_blocks"]
    given = run_cli("evaluate", out, "--config", out / "run_config.yaml", "--json")
    assert given.exit_code == 0 and json.loads(given.stdout)["eval_loss"] == figures["eval_loss"]
    # A data flag given goes over the run's own settings, which stay: its dataset, block size and masks.
    fewer = run_cli("evaluate", out, "--max-eval-samples", "10", "--json")
    assert fewer.exit_code == 0, fewer.output
    assert "evaluating on the run's own data settings" in fewer.stderr
    assert json.loads(fewer.stdout)["eval_blocks"] == 10


def test_saved_folder_reloads_in_the_pipeline_with_the_trained_logits(trained):
    from transformers import AutoModelForMaskedLM, pipeline

    out, results = trained
    fill = pipeline("fill-mask", model=str(out), device="cpu")
    # The in-memory model at the end of training is what accelerate wrote into the final checkpoint.
    in_memory = AutoModelForMaskedLM.from_pretrained(str(out))
    final = out / f"checkpoint-{results['optimizer_steps']}"
    state = {key.removeprefix("model."): value for key, value in load_state(final).items()}
    missing, unexpected = in_memory.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.decoder.weight", "lm_head.decoder.bias"}  # tied, saved once
    inputs = fill.tokenizer(["the cat sees <mask> ball.", "a dog <mask> the moon"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(fill.model(**inputs).logits, in_memory.eval()(**inputs).logits)


def test_mask_filler_top_k_matches_the_pipeline(trained):
    from transformers import pipeline

    from pt_mlm import MaskFiller

    out, _ = trained
    filler, fill = MaskFiller(str(out)), pipeline("fill-mask", model=str(out), device="cpu")
    for text in ("the cat sees <mask> ball.", "a dog [MASK] the moon"):
        ours = filler(text, top_k=5)
        theirs = fill(text.replace("[MASK]", "<mask>"), top_k=5)
        assert [p["token"] for p in ours] == [p["token"] for p in theirs]
        np.testing.assert_allclose([p["score"] for p in ours], [p["score"] for p in theirs], rtol=1e-4)
    several = filler(["the <mask> sees <mask> ball.", "my friend <mask> a book"], top_k=2)
    assert len(several) == 2 and len(several[0]) == 2 and len(several[1]) == 2
    # The pipeline's targets: vocabulary entries as they are, other words by their first token.
    targets = ["Ġthe", "Ġthen", "Ġhappy", "zebra"]
    for top_k in (2, 10):
        ours = filler("the cat sees <mask>.", top_k=top_k, targets=targets)
        theirs = fill("the cat sees <mask>.", top_k=top_k, targets=targets)
        assert [p["token"] for p in ours] == [p["token"] for p in theirs] and len(ours) == min(top_k, 4)
        np.testing.assert_allclose([p["score"] for p in ours], [p["score"] for p in theirs], rtol=1e-4)


def test_fill_mask_cli_prints_a_table_and_json(trained):
    out, _ = trained
    table = run_cli("fill-mask", out, "the cat sees <mask> ball.", "--top-k", "3")
    assert table.exit_code == 0 and "rank" in table.output and len(table.output.strip().splitlines()) == 5
    as_json = run_cli("fill-mask", out, "the cat sees <mask> ball.", "--top-k", "2", "--json")
    assert len(json.loads(as_json.output)[0]["masks"][0]) == 2
    targeted = run_cli("fill-mask", out, "the cat sees <mask>.", "--target", "Ġthe", "--target", "Ġhappy", "--json")
    assert {p["token_str"] for p in json.loads(targeted.output)[0]["masks"][0]} == {"the", "happy"}
    wrong = run_cli("fill-mask", out, "the cat sees <mask>.", "--top-k", "0")
    assert wrong.exit_code == 2 and "--top-k: must be at least 1" in wrong.output


def test_fill_mask_json_is_one_valid_document_for_any_number_of_texts(trained):
    out, _ = trained
    texts = ["the cat sees <mask> ball.", "a dog <mask> the moon", "the <mask> reads <mask> book"]
    printed = json.loads(run_cli("fill-mask", out, *texts, "--top-k", "2", "--json").output)
    assert [item["text"] for item in printed] == texts
    assert [len(item["masks"]) for item in printed] == [1, 1, 2]
    assert all(len(mask) == 2 for item in printed for mask in item["masks"])


def test_text_without_a_mask_is_a_usage_error(trained):
    out, _ = trained
    result = run_cli("fill-mask", out, "no mask here")
    assert result.exit_code == 2 and "TEXT: no mask in 'no mask here'" in result.output


def test_existing_output_dir_survives(trained, tiny_roberta, eli5_jsonl):
    out, _ = trained
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = run_cli("train", "--model", tiny_roberta, "--dataset", eli5_jsonl, "--output-dir", out)
    assert result.exit_code == 2
    assert "--output-dir:" in result.output and "--overwrite-output-dir" in result.output
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}


def without_dropout(model_dir, tmp_path):
    """A copy of the tiny model with dropout off, so two batch layouts can be compared exactly."""
    import shutil

    copy = tmp_path / "no-dropout"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_gradient_accumulation_is_the_mean_of_its_micro_batches_exactly(tiny_roberta, eli5_jsonl, tmp_path):
    """One optimizer step over 2 micro-batches of 4 against the same step by hand: AdamW (fused, as the loop) on
    the gradient of the mean of the two micro-batch losses (the Trainer's accumulation). Equal to float32's
    reach: the loop sums the two gradients in `.grad`, the hand step in one backward (a few ulp); Adam's first
    step divides each gradient by its own size, so a weight moves by about the learning rate either way."""
    from transformers import AutoModelForMaskedLM

    from pt_mlm.model import no_decay_groups

    model = without_dropout(tiny_roberta, tmp_path)
    common = ("--max-steps", "1", "--weight-decay", "0", "--lr-scheduler", "constant", "--learning-rate", "1e-3")
    args = ("--per-device-batch-size", "4", "--gradient-accumulation-steps", "2", *common)
    ours = train_tiny(model, eli5_jsonl, tmp_path / "acc", *args)
    reference = AutoModelForMaskedLM.from_pretrained(model).train()
    micro = [
        reference(input_ids=b["input_ids"], labels=b["labels"]).loss for b in pt_mlm_batches(model, eli5_jsonl, 2)
    ]
    (sum(micro) / 2).backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    optimizer = torch.optim.AdamW(no_decay_groups(reference, 0.0), lr=1e-3, fused=True)
    optimizer.step()
    assert ours["optimizer_steps"] == 1
    np.testing.assert_allclose(ours["loss_log"]["losses"][0], float(sum(micro) / 2), rtol=1e-6)
    np.testing.assert_allclose(ours["loss_log"]["grad_norms"][0], float(grad_norm), rtol=1e-5)
    assert float(grad_norm) > 1.0, "clipping acted, and is part of what is compared"
    trained, expected = load_state(tmp_path / "acc"), reference.state_dict()
    for name, weight in trained.items():
        torch.testing.assert_close(weight, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_trains_on_cpu(tiny_roberta, eli5_jsonl, tmp_path, caplog):
    caplog.set_level("INFO", logger="mlm")
    results = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "bf16", "--mixed-precision", "bf16", "--num-epochs", "1")
    assert results["precision"] == "bf16"
    assert "oneDNN linears False" in caplog.text  # autocast's bf16 products are oneDNN's already
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"]


def test_accelerate_launch_settings_are_used_when_no_flag_is_given(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "launched"
    launch = ["-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision", "bf16"]
    done = warm.run(  # the launcher in a warm child; the run it starts, a fresh interpreter
        "pt",
        [*launch, "-m", "pt_mlm", *pt_train_command(tiny_roberta, eli5_jsonl, out, "--max-steps", "2")],
        {**child_env(), "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2", "PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    derived = next(line for line in done.stderr.splitlines() if "derived:" in line)
    assert "precision bf16" in derived and "global batch 16" in derived, derived
    results = json.loads((out / "all_results.json").read_text())
    assert results["precision"] == "bf16" and results["global_batch"] == 16
    run_config = (out / "run_config.yaml").read_text()
    assert "mixed_precision: bf16" in run_config and "gradient_accumulation_steps: 2" in run_config


def test_flags_given_beat_accelerates_settings(tiny_roberta, eli5_jsonl, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2")
    args = ("--mixed-precision", "no", "--gradient-accumulation-steps", "1", "--max-steps", "1")
    results = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "given", *args)
    assert results["precision"] == "no" and results["global_batch"] == 8


def test_resume_after_sigkill_ends_with_the_same_weights_and_losses(tiny_roberta, eli5_jsonl, tmp_path):
    args = (
        "--num-epochs",
        "2",
        "--gradient-accumulation-steps",
        "2",
        "--per-device-batch-size",
        "4",
        "--checkpointing-steps",
        "7",
    )
    whole = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "whole", *args)
    # A real process, killed without warning once it has checkpointed mid-epoch (step >= 14).
    parts = tmp_path / "parts"
    process = warm.start(
        "pt", ["-m", "pt_mlm", *pt_train_command(tiny_roberta, eli5_jsonl, parts), *args], child_env()
    )
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if newest_step(parts) >= 14:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = newest_step(parts)
    assert 14 <= killed_at < whole["optimizer_steps"] and not (parts / "all_results.json").exists()

    resumed = train_tiny(tiny_roberta, eli5_jsonl, parts, *args, "--resume", "auto")
    assert resumed["optimizer_steps"] == whole["optimizer_steps"]
    # Exact: the same batches, masks, dropout draws and arithmetic in the same order, wherever the run stopped.
    assert resumed["loss_log"]["losses"] == whole["loss_log"]["losses"]
    a, b = load_state(tmp_path / "whole"), load_state(parts)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_resume_without_a_checkpoint_names_the_flag(tiny_roberta, eli5_jsonl, tmp_path):
    result = run_cli(
        "train",
        "--model",
        tiny_roberta,
        "--dataset",
        eli5_jsonl,
        "--output-dir",
        tmp_path / "none",
        "--resume",
        "auto",
    )
    assert result.exit_code == 2 and "--resume: no complete checkpoint" in result.output


@pytest.mark.slow
def test_builtin_model_on_a_slice_of_the_builtin_corpus_reports_and_resumes(tmp_path):
    args = ["--max-samples", "300", "--block-size", "64", "--max-steps", "6", "--checkpointing-steps", "3"]
    results = train_tiny("builtin:minilm", BUILTIN_DATASET, tmp_path / "builtin", *args, "--learning-rate", "2e-4")
    # A crash after step 3's checkpoint, resumed: BERT's tied decoder is stored under the embeddings' name, and
    # the resume ties it again rather than refusing it, to the uninterrupted run's losses.
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "builtin", crashed, ignore=shutil.ignore_patterns("checkpoint-6", "all_results.json"))
    resumed = train_tiny(
        "builtin:minilm", BUILTIN_DATASET, crashed, *args, "--learning-rate", "2e-4", "--resume", "auto"
    )
    assert resumed["loss_log"]["losses"] == results["loss_log"]["losses"]
    assert results["fresh_weights"], "the packaged encoder has no MLM head; its fresh weights are reported"
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"]
    # The model card is the Hub's: ModelCard reads back its metadata and evaluation results.
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "builtin" / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0" and card.data.language == "en", "from the base model's card"
    assert card.data.pipeline_tag == "fill-mask" and card.data.library_name == "transformers"
    found = {r.metric_type: r for r in card.data.eval_results}
    assert found["perplexity"].metric_value == pytest.approx(results["after"]["perplexity"])
    assert found["loss"].metric_value == pytest.approx(results["after"]["eval_loss"])
    assert found["perplexity"].task_type == "fill-mask" and found["perplexity"].dataset_name == BUILTIN_DATASET
    assert "transformers " in card.text and "torch " in card.text, "framework versions"
    # The Trainer's flat keys beside ours, for scripts written for run_mlm.py's all_results.json.
    assert (
        results["eval_loss"] == results["after"]["eval_loss"]
        and results["perplexity"] == results["after"]["perplexity"]
    )
    assert results["train_loss"] == pytest.approx(np.mean(results["loss_log"]["losses"]))
    assert results["epoch"] == results["epochs_trained"] and results["train_runtime"] == results["train_seconds"]
    assert results["train_samples_per_second"] == pytest.approx(6 * 8 / results["train_seconds"])
    # and split as the Trainer's save_metrics writes them
    train_file = json.loads((tmp_path / "builtin" / "train_results.json").read_text())
    eval_file = json.loads((tmp_path / "builtin" / "eval_results.json").read_text())
    assert train_file["train_loss"] == results["train_loss"] and train_file["epoch"] == results["epoch"]
    assert eval_file == {
        key: results[key] for key in ("eval_loss", "perplexity", "eval_accuracy", "eval_samples", "epoch")
    }


@pytest.fixture(scope="module")
def plain_six_steps(tiny_roberta, eli5_jsonl, tmp_path_factory):
    """The default (fast) path's 6 steps: the one baseline every speed flag is held to."""
    return train_tiny(tiny_roberta, eli5_jsonl, tmp_path_factory.mktemp("plain") / "out", "--max-steps", "6")


@pytest.mark.parametrize(
    "flags",
    [
        ("--no-sparse-head",),
        ("--attention", "eager"),
        ("--no-fused-adamw",),
        ("--no-workarounds",),
        ("--torch-compile",),
        ("--loader-workers", "2"),
        ("--log-every", "1"),
    ],
)
def test_speed_flags_train_to_the_same_losses(
    tiny_roberta, eli5_jsonl, tmp_path, flags, monkeypatch, caplog, plain_six_steps
):
    if "--torch-compile" in flags:
        import torch._dynamo
        import torch._inductor.config as inductor

        # Compiled dropout draws from Inductor's own generator; with the eager one, both paths must agree.
        monkeypatch.setattr(inductor, "fallback_random", True)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
    caplog.set_level("INFO", logger="mlm")  # the run's own log (mlm_toolkit.run)
    plain = plain_six_steps
    other = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "other", "--max-steps", "6", *flags)
    defaults = plain["config"]["pt"]
    assert defaults["sparse_head"] and defaults["fused_adamw"] and defaults["attention"] is None  # the fast path
    assert f"sparse head {'--no-sparse-head' not in flags}" in caplog.text  # and no warning where it applies
    assert ("attention sdpa" in caplog.text) == ("--attention" not in flags)  # by default RoBERTa's choice, SDPA
    np.testing.assert_allclose(other["loss_log"]["losses"], plain["loss_log"]["losses"], rtol=1e-4)
    assert other["after"]["eval_loss"] == pytest.approx(plain["after"]["eval_loss"], rel=1e-4)
    assert other["loss_log"]["steps"] == plain["loss_log"]["steps"] == [1, 2, 3, 4, 5, 6]  # every step, read late
    # float32 on an AVX-512 CPU: the encoder's products run on oneDNN, but under torch.compile (Inductor's own)
    from pt_mlm.compat import onednn_pays

    swapped = onednn_pays() and flags[0] not in ("--torch-compile", "--no-workarounds")  # AVX-512 CPUs only
    assert ("oneDNN linears True" in caplog.text) == swapped
    if "--attention" in flags:  # the model really ran the eager kernels (the run logs what it loaded)
        assert "attention eager" in caplog.text and "attention sdpa" not in caplog.text
    if "--loader-workers" in flags:
        assert other["config"]["pt"]["loader_workers"] == 2
        # measured (the workers' start-up alone is a wait), and part of the step time
        assert 0 < other["data_wait_seconds"] < other["train_seconds"]
    if "--torch-compile" in flags:  # the losses above came from compiled code, not a silent eager fallback
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1


def test_sparse_head_loss_equals_the_models_own_loss(tiny_bert):
    from transformers import AutoModelForMaskedLM

    from pt_mlm.loaders import with_masked_positions
    from pt_mlm.model import MaskedTokenLoss

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    ids = torch.randint(5, model.config.vocab_size, (4, 16))
    labels = torch.where(torch.rand(4, 16) < 0.3, ids, torch.full_like(ids, -100))
    with torch.no_grad():
        reference = model(input_ids=ids, labels=labels).loss
        net = MaskedTokenLoss(model, probe={"input_ids": ids[:2], "labels": labels[:2]})
        sparse, rows = net(input_ids=ids, labels=labels)
        dense, _ = MaskedTokenLoss(model)(input_ids=ids, labels=labels)  # no probe: the full head
        # The training loader finds the masked positions on the host and hands them in.
        batch = with_masked_positions({"input_ids": ids, "labels": labels})
        given, given_rows = net(**batch)
    assert net.sparse and not MaskedTokenLoss(model).sparse
    torch.testing.assert_close(sparse.mean(), reference)
    torch.testing.assert_close(dense.mean(), reference)
    torch.testing.assert_close(given, sparse)
    assert torch.equal(rows, (labels != -100).nonzero()[:, 0]) and torch.equal(given_rows, rows)


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_computes_in_float32_what_nn_linear_does(bias):
    """Its output (modified in place) and its three gradients, against float64: within float32's rounding (25 ulp
    of the largest value; nn.Linear's MKL measured 5e-7, oneDNN 1.1e-6). A bf16 product would be 4e-3 off, a
    wrong one O(1)."""
    import copy

    from pt_mlm.compat import OneDNNLinear, onednn_linears

    torch.manual_seed(0)
    plain = torch.nn.Linear(384, 1536, bias=bias)
    exact = copy.deepcopy(plain).double()
    onednn_linears(plain)
    assert type(plain) is OneDNNLinear and plain.state_dict().keys() == exact.state_dict().keys()
    inputs, upstream = torch.randn(8, 128, 384), torch.randn(8, 128, 1536)
    results = []
    for module in (plain, exact):
        x = inputs.to(module.weight.dtype).requires_grad_()
        y = module(x)
        y /= 2  # in place, as Longformer scales its queries: the output is no view a Function made
        results.append([y, *torch.autograd.grad(y, [x, *module.parameters()], upstream.to(y.dtype))])
    for ours, truth in zip(*results, strict=True):
        assert (ours.double() - truth).abs().max() <= 3e-6 * truth.abs().max()


def test_padded_examples_lose_exactly_what_the_model_loses_with_their_attention_mask(tiny_bert):
    """--line-by-line: the attention mask goes to the encoder, and the loader's cut to the longest example
    of the batch changes nothing."""
    from transformers import AutoModelForMaskedLM

    from pt_mlm.loaders import with_masked_positions
    from pt_mlm.model import MaskedTokenLoss

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    lengths = torch.tensor([16, 9, 5, 12])
    attention = (torch.arange(24)[None, :] < lengths[:, None]).long()  # padded to 24, longest 16
    ids = torch.where(attention.bool(), torch.randint(5, model.config.vocab_size, (4, 24)), 0)
    labels = torch.where((torch.rand(4, 24) < 0.3) & attention.bool(), ids, torch.full_like(ids, -100))
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        batch = with_masked_positions({"input_ids": ids, "attention_mask": attention, "labels": labels})
        ours, _ = MaskedTokenLoss(model)(**batch)
        unmasked, _ = MaskedTokenLoss(model)(input_ids=ids, labels=labels)
    assert batch["input_ids"].shape == (4, 16)
    torch.testing.assert_close(ours.mean(), reference)
    assert (unmasked - ours).abs().max() > 1e-6, "without the mask, padding would change the losses"


@pytest.mark.parametrize("flag", ["--line-by-line", "--whole-word-masking"])
def test_line_by_line_and_whole_word_masking_train(tiny_roberta, eli5_jsonl, tmp_path, flag, caplog):
    caplog.set_level("INFO", logger="mlm")
    results = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "out", "--num-epochs", "2", flag)
    # A batch as long as its longest line: a new shape each step, which oneDNN would keep memory for.
    from pt_mlm.compat import onednn_pays

    assert f"oneDNN linears {onednn_pays() and flag != '--line-by-line'}" in caplog.text
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"] - 0.5
    assert results["config"]["data"][flag[2:].replace("-", "_")] is True
    if flag == "--line-by-line":  # one example per row: 160 train rows, 40 held out
        assert (results["data"]["train_blocks"], results["data"]["eval_blocks"]) == (160, 40)


@pytest.mark.parametrize("strategy", ["every_save", "end"])
def test_push_to_hub_pushes_each_save_and_the_folder_at_the_end(
    tiny_roberta, eli5_jsonl, tmp_path, monkeypatch, strategy
):
    hub = fake_hub(monkeypatch)
    args = ["--max-steps", "4", "--checkpointing-steps", "2", "--push-to-hub", "--hub-model-id", "me/tiny"]
    train_tiny(
        tiny_roberta, eli5_jsonl, tmp_path / "out", *args, "--hub-token", "hf_given", "--hub-strategy", strategy
    )
    assert hub.repos == [("me/tiny", False, True)] and set(hub.tokens) == {"hf_given"}
    messages = [message for message, _, _ in hub.uploads]
    saves = ["pt-mlm: step 2", "pt-mlm: step 4"] if strategy == "every_save" else []
    assert messages[:-1] == saves and messages[-1].startswith("pt-mlm: perplexity")
    if saves:
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(hub.uploads[0][1])
    _, files, ignored = hub.uploads[-1]
    assert {"model.safetensors", "README.md", "all_results.json", "run_config.yaml"} <= set(files)
    assert "checkpoint-*" in ignored and "hub-push" not in files, "the staging folder is gone"
    card = (tmp_path / "out" / "README.md").read_text()
    assert 'pipeline("fill-mask", model="me/tiny")' in card and "- name: me/tiny" in card
    out = tmp_path / "out"
    for written in (out / "run_config.yaml", out / "all_results.json"):
        assert "hf_given" not in written.read_text(), "the token is never written to disk"


def test_save_total_limit_keeps_the_newest_checkpoints(tiny_roberta, eli5_jsonl, tmp_path):
    from mlm_toolkit.outputs import complete_checkpoints

    train_tiny(
        tiny_roberta,
        eli5_jsonl,
        tmp_path / "out",
        "--max-steps",
        "12",
        "--checkpointing-steps",
        "3",
        "--save-total-limit",
        "2",
    )
    assert [p.name for p in complete_checkpoints(tmp_path / "out")] == ["checkpoint-9", "checkpoint-12"]


def test_checkpointing_none_leaves_no_checkpoint_and_nothing_to_resume(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    results = train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "4", "--checkpointing-steps", "none")
    assert results["optimizer_steps"] == 4 and (out / "model.safetensors").is_file()
    assert not list(out.glob("checkpoint-*"))
    (out / "all_results.json").unlink()
    refused = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, out), "--max-steps", "6", "--resume", "auto")
    assert refused.exit_code == 2 and "--resume: no complete checkpoint" in refused.output


# What `pt-mlm train --max-steps 6` learns on the tiny (one-layer) RoBERTa and corpus, seed 42, recorded 2026-12-07
# on an AVX2 EPYC (torch 2.13). Equal to float32's reach across CPUs and product kernels (1e-5 relative: a few ulp a
# product, carried through 6 steps; the oneDNN/MKL gap measured 2.2e-7 after 20). Changed only by a commit that
# says why what the CLI learns changed.
GOLDEN_PT_LOSSES = [5.687836170196533, 5.685540676116943, 5.651270389556885, 5.626535892486572, 5.617924690246582,
                    5.588751316070557]  # fmt: skip


def test_the_cli_learns_the_golden_losses(plain_six_steps):
    np.testing.assert_allclose(plain_six_steps["loss_log"]["losses"], GOLDEN_PT_LOSSES, rtol=1e-5)


def test_every_file_of_a_run_is_as_the_umask_allows(trained):
    """safetensors writes 0600 through its own temporary file: another user of the machine could not load the
    model (mode 0600 under umask 022 before; every other file 0644)."""
    out = trained[0]
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in [*out.glob("*"), *out.glob("checkpoint-*/*")] if p.is_file()]
    assert any(p.name == "model.safetensors" and p.parent != out for p in files), "a checkpoint's weights too"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o777 != 0o666 & ~umask} == {}
