"""transformers' own tests of run_mlm.py and run_mlm_no_trainer.py, their command lines as they are (the model
swapped for the tiny RoBERTa, their fixture text for ours; tf-mlm's runs the built-in model, in
test_tf_train.py), and the anchors' flags that change a run."""

from __future__ import annotations

import json

import pytest
from pt_helpers import pt_train_command, run_cli
from tiny_models import tiny_corpus


@pytest.fixture
def sample_text(tmp_path):
    path = tmp_path / "sample_text.txt"  # as tests/fixtures/sample_text.txt: lines of English text
    path.write_text("\n".join(tiny_corpus(60)) + "\n")
    return path


def get_results(output_dir) -> dict:
    """As the example tests read a run: all_results.json."""
    return json.loads((output_dir / "all_results.json").read_text())


@pytest.mark.slow
def test_transformers_test_run_mlm_command_line(sample_text, tiny_roberta, tmp_path):
    for cpu in ("--use_cpu", "--no_cuda"):  # older transformers versions pass --no_cuda
        out = tmp_path / cpu.strip("-")
        testargs = f"""
            train --model_name_or_path {tiny_roberta} --train_file {sample_text} --validation_file {sample_text}
            --output_dir {out} --overwrite_output_dir --do_train --do_eval --prediction_loss_only
            --num_train_epochs=1 {cpu}
        """.split()
        result = run_cli(*testargs)
        assert result.exit_code == 0, result.output
        assert get_results(out)["perplexity"] < 1e6 and get_results(out)["config"]["pt"]["use_cpu"]


@pytest.mark.slow
def test_transformers_test_run_mlm_no_trainer_command_line(sample_text, tiny_roberta, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --with_tracking: every tracker installed
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):  # the run sets them: unset again after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    out = tmp_path / "out"
    testargs = f"""
        train --model_name_or_path {tiny_roberta} --train_file {sample_text} --validation_file {sample_text}
        --output_dir {out} --num_train_epochs=1 --checkpointing_steps epoch --with_tracking
    """.split()
    result = run_cli(*testargs)
    assert result.exit_code == 0, result.output
    results = get_results(out)
    assert results["perplexity"] < 1e6 and "tensorboard" in results["config"]["train"]["report_to"]
    assert any((out / "runs").rglob("events.out.tfevents.*")) and (out / "runs" / "mlruns").is_dir()


def test_gradient_checkpointing_learns_what_the_plain_run_learns(tiny_roberta, eli5_jsonl, tmp_path):
    runs = {}
    for name, extra in (("plain", ()), ("checkpointed", ("--gradient-checkpointing",))):
        out = tmp_path / name
        result = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, out, "--max-steps", "3", *extra))
        assert result.exit_code == 0, result.output
        runs[name] = get_results(out)
    # The same operations, recomputed: equal to float32 rounding (dropout's draws are replayed).
    plain, checkpointed = (runs[name]["loss_log"]["losses"] for name in ("plain", "checkpointed"))
    assert checkpointed == pytest.approx(plain, rel=1e-6)
    assert runs["checkpointed"]["config"]["pt"]["gradient_checkpointing"]
