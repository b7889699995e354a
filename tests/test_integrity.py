"""Run integrity: --resume continues the same run or refuses naming what differs; a finished run is
never rewritten; no nan or inf reaches a report; the figures agree wherever they are written."""

from __future__ import annotations

import json
import shutil

import pytest
from pt_helpers import (
    TINY_ARGS,
    checkpoint_files,
    digest,
    pt_train_command,
    run_child,
    run_cli,
    train_tiny,
)

from mlm_toolkit.outputs import checkpoint_damage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stopped_run(tiny_roberta, eli5_jsonl, tmp_path_factory):
    """A run with checkpoints at steps 2 and 4 whose end never came: its all_results.json is gone."""
    work = tmp_path_factory.mktemp("stopped")
    data = work / "eli5.jsonl"
    shutil.copy(eli5_jsonl, data)
    out = work / "out"
    train_tiny(tiny_roberta, data, out, "--max-steps", "4", "--checkpointing-steps", "2")
    (out / "all_results.json").unlink()
    return out, data


def test_the_newest_checkpoint_of_an_unfinished_run_is_a_model_folder(stopped_run, tmp_path):
    """As transformers finds and loads it (where this project is not imported: test_tf_train.py's plain test)."""
    from transformers import pipeline
    from transformers.trainer_utils import get_last_checkpoint

    out, data = stopped_run
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-4")
    top = pipeline("fill-mask", model=str(out / "checkpoint-4"), device="cpu")("the cat sees <mask> ball.")[0]
    filled = run_cli("fill-mask", out / "checkpoint-4", "the cat sees <mask> ball.", "--json")
    assert filled.exit_code == 0 and json.loads(filled.output)[0]["masks"][0][0]["token"] == top["token"]
    scored = run_cli("evaluate", out / "checkpoint-4", "--dataset", data, "--block-size", "32", "--json")
    assert scored.exit_code == 0 and json.loads(scored.stdout)["eval_blocks"] > 0, scored.output


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--block-size", "16"),
        ("--mlm-probability", "0.2"),
        ("--seed", "7"),
        ("--per-device-batch-size", "4"),
        ("--gradient-accumulation-steps", "2"),
        ("--learning-rate", "2e-3"),
        ("--max-grad-norm", "0"),
        ("--test-size", "0.3"),
        ("--max-samples", "150"),
        ("--max-steps", "3"),
    ],
)
def test_resume_refuses_a_changed_setting_naming_it(stopped_run, tiny_roberta, flag, value):
    out, data = stopped_run
    before = checkpoint_files(out)
    args = [a for a in TINY_ARGS]
    if flag in args:  # replace the tiny default rather than giving the flag twice
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    if flag != "--max-steps":
        args += ["--max-steps", "8"]
    result = run_cli(
        "train", "--model", tiny_roberta, "--dataset", data, "--output-dir", out, *args, "--resume", "auto"
    )
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {flag}:") and "checkpoint-4" in last, last
    assert checkpoint_files(out) == before, "a refused resume leaves the checkpoints as they were"


def test_resume_refuses_other_data_under_the_same_name(stopped_run, tiny_roberta, tmp_path):
    out, data = stopped_run
    edited = tmp_path / "out"
    shutil.copytree(out, edited)
    lines = data.read_text().splitlines()
    changed = tmp_path / data.name
    changed.write_text("\n".join([lines[0].replace("the cat", "the lion")] + lines[1:]) + "\n")
    result = run_cli(*pt_train_command(tiny_roberta, changed, edited), "--max-steps", "8", "--resume", "auto")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("Error: --dataset: checkpoint checkpoint-4 was trained on other data")
    )


def test_resuming_at_the_last_checkpoint_reports_no_nan(tiny_roberta, eli5_jsonl, tmp_path):
    """Killed after its final checkpoint but before its report, a run resumed trains no step: its
    throughput is unknown (null, "n/a"), not nan."""
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--num-epochs", "1")
    (out / "all_results.json").unlink()
    results = train_tiny(tiny_roberta, eli5_jsonl, out, "--num-epochs", "1", "--resume", "auto")
    text = (out / "all_results.json").read_text()
    assert results["train_tokens_per_second"] is None and results["optimizer_steps"] > 0
    assert "nan" not in text.lower() and "infinity" not in text.lower()
    assert "| train tokens/s | n/a" in (out / "README.md").read_text()


def test_a_finished_run_is_never_rewritten(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "3")
    before = digest(out)
    for steps, code, says in (
        ("3", 0, "holds a complete run (3 optimizer steps); nothing to resume"),
        ("6", 2, "Error: --max-steps: "),  # and how to train further (test_settings.py)
    ):
        result = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, out), "--max-steps", steps, "--resume", "auto")
        assert result.exit_code == code and says in result.output, result.output
    assert digest(out) == before


def test_figures_agree_in_results_card_console_and_tensorboard(tiny_roberta, eli5_jsonl, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    result = run_cli(
        *pt_train_command(tiny_roberta, eli5_jsonl, out), "--num-epochs", "1.5", "--report-to", "tensorboard"
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "all_results.json").read_text())
    before, after = results["before"], results["after"]
    card = (out / "README.md").read_text()
    per_epoch = -(-results["data"]["train_blocks"] // 8)
    assert results["epochs_trained"] == round(results["optimizer_steps"] / per_epoch, 2) < 2
    assert (
        f"| epochs trained / optimizer steps | {results['epochs_trained']:g} / {results['optimizer_steps']} |" in card
    )
    assert f"| perplexity | {before['perplexity']:.3f} | {after['perplexity']:.3f} |" in card
    assert f"perplexity after:  {after['perplexity']:.2f} (eval loss {after['eval_loss']:.4f})" in result.output
    assert f"{results['train_tokens_per_second']:,.0f} train tokens/s" in result.output
    events = EventAccumulator(str(next((out / "runs").rglob("events.out.tfevents*")).parent))
    events.Reload()
    eval_losses = {e.step: e.value for e in events.Scalars("eval/loss")}
    assert eval_losses == pytest.approx({e["step"]: e["eval_loss"] for e in results["loss_log"]["evals"]}, rel=1e-6)
    train_losses = [e.value for e in events.Scalars("train/loss")]
    assert train_losses == pytest.approx(results["loss_log"]["losses"], rel=1e-6)
    assert len(events.Scalars("train/grad_norm")) == results["optimizer_steps"]


@pytest.mark.parametrize("damage", ["truncated weights", "broken state", "missing optimizer"])
def test_resume_auto_skips_a_damaged_newest_checkpoint(stopped_run, tiny_roberta, tmp_path, damage):
    out = tmp_path / "out"
    shutil.copytree(stopped_run[0], out)
    newest = out / "checkpoint-4"
    assert (newest / "manifest.json").is_file(), "checkpoints describe their files"
    if damage == "truncated weights":
        weights = newest / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "broken state":
        (newest / "progress.json").write_text('{"global_step": 4, "epo')
    else:
        (newest / "optimizer.bin").unlink()
    results = train_tiny(
        tiny_roberta, stopped_run[1], out, "--max-steps", "6", "--checkpointing-steps", "2", "--resume", "auto"
    )
    assert results["optimizer_steps"] == 6
    assert results["loss_log"]["steps"] == list(range(1, 7)), "steps 3 and 4 are retrained, once each"
    assert (out / "checkpoint-4" / "manifest.json").is_file()
    assert checkpoint_damage(out / "checkpoint-4") is None, "the damaged one was rewritten"


def test_resume_with_every_checkpoint_damaged_says_which_files(stopped_run, tiny_roberta, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(stopped_run[0], out)
    before = checkpoint_files(out)
    for step in ("checkpoint-2", "checkpoint-4"):
        (out / step / "optimizer.bin").unlink()
    result = run_child(*pt_train_command(tiny_roberta, stopped_run[1], out), "--max-steps", "6", "--resume", "auto")
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.error_line
    assert line.startswith("Error: --resume: no checkpoint in") and line.count("optimizer.bin is missing") == 2, line
    assert set(checkpoint_files(out)) == set(before) - {"checkpoint-2/optimizer.bin", "checkpoint-4/optimizer.bin"}


def test_resume_refuses_another_model_architecture_in_the_same_folder(stopped_run, tiny_bert, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(stopped_run[0], out)
    before = digest(out)
    result = run_child(*pt_train_command(tiny_bert, stopped_run[1], out), "--max-steps", "6", "--resume", "auto")
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.error_line
    assert line.startswith("Error: --model:") and "roberta" in line and "bert" in line, line
    assert digest(out) == before, "the checkpoints are byte-identical"


def flip_bytes(path, at: int, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + count] = bytes(255 - b for b in data[at : at + count])
    path.write_bytes(bytes(data))


def test_every_file_read_back_is_checked(tiny_roberta, eli5_jsonl, tmp_path, caplog):
    """The token cache is rebuilt when edited; the final model and a checkpoint named damaged by evaluate,
    fill-mask, --model and --resume; a run stopped before its end is named incomplete, its figures still given."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ("--max-steps", "4", "--checkpointing-steps", "2", "--cache-dir", str(cache))
    whole = train_tiny(tiny_roberta, eli5_jsonl, out, *args)
    assert json.loads((out / "manifest.json").read_text()).keys() >= {"model.safetensors", "config.json"}

    evaluate = ["evaluate", str(out), "--json"]
    blocks = sorted(cache.rglob("blocks-*.arrow"), key=lambda p: p.stat().st_size)[0]  # the held-out blocks
    flip_bytes(blocks, blocks.stat().st_size - 400, 200)
    evaluated = run_cli(*evaluate)
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["eval_loss"] == pytest.approx(whole["after"]["eval_loss"], rel=1e-5)
    assert f"the token cache {blocks} differs from what was written: rebuilding it" in caplog.text

    stopped = tmp_path / "stopped"  # killed after checkpoint-4: no final model, no report
    shutil.copytree(out, stopped)
    for name in ("model.safetensors", "config.json", "all_results.json"):
        (stopped / name).unlink()
    caplog.clear()
    evaluated = run_cli("evaluate", str(stopped), "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["eval_loss"] == pytest.approx(whole["after"]["eval_loss"], rel=1e-5)
    assert f"{stopped} is an incomplete run (stopped before its end, or still training): using " in caplog.text
    assert "checkpoint-4" in caplog.text

    flip_bytes(out / "checkpoint-2" / "model.safetensors", 4096)
    damaged = run_cli("evaluate", str(out / "checkpoint-2"))
    assert damaged.exit_code == 1
    assert damaged.output.strip().endswith(
        f"--model: {out / 'checkpoint-2'} is damaged: model.safetensors differs from what was written; "
        "train it again or use another model"
    )
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 16])  # truncated
    said = f"--model: {out} is damaged: model.safetensors has 65536 bytes"
    for command in (evaluate, ["fill-mask", str(out), "the cat <mask> the ball."]):
        result = run_cli(*command)
        assert result.exit_code == 1 and said in result.output, result.output
    trained = run_cli(*pt_train_command(out, eli5_jsonl, tmp_path / "again", "--max-steps", "1"))
    assert trained.exit_code == 1 and said in trained.output
    resumed = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, out, *args, "--resume", "auto"))
    assert resumed.exit_code == 1, resumed.output
    assert f"--resume: {out} holds a complete run, but model.safetensors has 65536 bytes" in resumed.output
