"""Nothing previously written is lost: an output folder never overlaps what the run reads, an overwrite
only discards the old run once the new one has something safe, and two runs never share a folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from pt_helpers import pt_train_command, digest, run_child, run_cli, train_tiny
from test_reliability import start_pt

pytestmark = pytest.mark.slow


def train_args(model, data, out, *extra):
    return [
        *pt_train_command(model, data, out),
        "--max-steps",
        "2",
        *extra,
    ]


def test_the_model_folder_as_output_is_refused_and_kept(tiny_roberta, eli5_jsonl, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_roberta, model)
    before = digest(model)
    for out in (model, model / "finetuned", tmp_path):  # is, lies inside, contains the model folder
        result = run_child(*train_args(model, eli5_jsonl, out, "--overwrite-output-dir"))
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        message = result.error_line
        assert message.startswith("Error: --output-dir:") and "--model" in message, message
    assert digest(model) == before


def test_the_dataset_folder_and_the_cache_are_refused_as_output(
    tiny_roberta, eli5_jsonl, tmp_path, monkeypatch
):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(eli5_jsonl, data / "eli5.jsonl")
    result = run_cli(*train_args(tiny_roberta, data, data / "out"))
    assert result.exit_code == 2 and "--dataset" in result.output.strip().splitlines()[-1]
    monkeypatch.setenv("MLM_CACHE_DIR", str(tmp_path / "runs" / "cache"))
    result = run_cli(*train_args(tiny_roberta, eli5_jsonl, tmp_path / "runs", "--overwrite-output-dir"))
    assert result.exit_code == 2 and "--cache-dir" in result.output.strip().splitlines()[-1]


def test_an_overwrite_that_fails_early_puts_the_previous_run_back(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "2")
    before = digest(out)
    result = run_cli(
        *train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir", "--text-column", "nope")
    )
    assert result.exit_code == 2 and "--text-column" in result.output
    assert digest(out) == before
    assert not list(tmp_path.glob(".out.replaced-*"))


def test_an_overwrite_that_succeeds_replaces_the_previous_run(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    result = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
    assert result.exit_code == 0, result.output
    assert not (out / "old.txt").exists() and (out / "all_results.json").is_file()
    assert not list(tmp_path.glob(".out.replaced-*")) and not (out / ".lock").exists()


def test_a_second_run_on_the_same_folder_refuses_naming_the_first(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    first = start_pt(out, tiny_roberta, eli5_jsonl, "--num-epochs", "8")
    deadline = time.time() + 120
    while not (out / ".lock").is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert (out / ".lock").is_file(), "the first run holds a lock while it runs"
    second = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
    assert first.poll() is None, "the first run was still going when the second was refused"
    assert second.exit_code == 2
    assert f"another run (PID {first.pid}) is writing to" in second.output
    _, errors = first.communicate(timeout=300)
    assert first.returncode == 0, errors[-2000:]
    assert (out / "all_results.json").is_file() and not (out / ".lock").exists()


def test_a_stale_lock_from_a_killed_run_is_taken_over(tiny_roberta, eli5_jsonl, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(f"{dead.pid}\n")
    result = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
    assert result.exit_code == 0, result.output
