"""Nothing previously written is lost: an output folder never overlaps what the run reads, an overwrite
only discards the old run once the new one has something safe, and two runs never share a folder."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from pt_helpers import digest, newest_step, pt_train_command, run_child, run_cli, train_tiny
from test_reliability import start_pt

pytestmark = pytest.mark.slow


def train_args(model, data, out, *extra):
    return [*pt_train_command(model, data, out), "--max-steps", "2", *extra]


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


def test_the_dataset_folder_and_the_cache_are_refused_as_output(tiny_roberta, eli5_jsonl, tmp_path, monkeypatch):
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
    result = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir", "--text-column", "nope"))
    assert result.exit_code == 2 and "--text-column" in result.output
    assert digest(out) == before
    assert not list(tmp_path.glob(".out.replaced-*"))


def test_an_overwrite_that_succeeds_replaces_the_previous_run(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "1", "--checkpointing-steps", "1")
    result = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
    assert result.exit_code == 0, result.output
    assert (out / "all_results.json").is_file() and not (out / "checkpoint-1").exists()
    assert not list(tmp_path.glob(".out.replaced-*")) and not (out / ".lock").exists()


def test_an_overwrite_never_deletes_files_the_tool_did_not_write(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "1")
    (out / "notes.txt").write_text("my own notes")
    (out / "other-project").mkdir()
    (out / "other-project" / "weights.bin").write_bytes(b"\x00" * 100)
    before = digest(out)
    result = run_child(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.error_line.startswith("Error: --output-dir:"), result.error_line
    assert "notes.txt" in result.error_line and "other-project/" in result.error_line
    assert digest(out) == before


def test_an_overwrite_writes_through_a_linked_output_folder(tiny_roberta, eli5_jsonl, tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    train_tiny(tiny_roberta, eli5_jsonl, real, "--max-steps", "1")
    link.symlink_to(real)
    result = run_cli(*train_args(tiny_roberta, eli5_jsonl, link, "--overwrite-output-dir"))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (real / "all_results.json").is_file()
    assert json.loads((real / "all_results.json").read_text())["optimizer_steps"] == 2


def holds(out, run) -> bool:
    """Whether the run `run` holds `out` (its lock): an overwrite has moved the previous run aside."""
    try:
        return (out / ".lock").read_text().strip() == str(run.pid)
    except OSError:
        return False


def start_overwrite_and_kill(model, data, out, ready) -> None:
    """An --overwrite-output-dir run of `out`, killed with SIGKILL as soon as `ready()` holds."""
    run = start_pt(out, model, data, "--overwrite-output-dir", "--num-epochs", "50", "--checkpointing-steps", "2")
    deadline = time.time() + 120
    while not ready(run) and time.time() < deadline and run.poll() is None:
        time.sleep(0.02)
    assert run.poll() is None, run.communicate()[1][-2000:]
    run.kill()
    run.wait()


def test_an_overwrite_killed_before_it_saved_gives_the_previous_run_back(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "1")
    before = digest(out)

    start_overwrite_and_kill(tiny_roberta, eli5_jsonl, out, lambda run: holds(out, run))
    assert list(tmp_path.glob(".out.replaced-*")) and not (out / "all_results.json").exists()
    result = run_child(*train_args(tiny_roberta, eli5_jsonl, out))  # the next run on the folder finds it
    assert "restored the previous run" in result.output, result.output
    assert result.exit_code == 2 and "already holds a run" in result.error_line
    assert digest(out) == before and not list(tmp_path.glob(".out.replaced-*"))


def test_an_overwrite_killed_after_a_checkpoint_is_finished_and_resumes(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "1")
    start_overwrite_and_kill(tiny_roberta, eli5_jsonl, out, lambda run: holds(out, run) and newest_step(out))
    result = run_child(*train_args(tiny_roberta, eli5_jsonl, out, "--max-steps", "4", "--resume", "auto"))
    assert "finished it by removing the previous run" in result.output, result.output
    assert result.exit_code == 0, result.output
    assert json.loads((out / "all_results.json").read_text())["optimizer_steps"] == 4
    assert not list(tmp_path.glob(".out.replaced-*"))


def test_a_second_run_on_the_same_folder_refuses_naming_the_first(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    first = start_pt(out, tiny_roberta, eli5_jsonl, "--num-epochs", "1000")
    deadline = time.time() + 120
    while not (out / ".lock").is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert (out / ".lock").is_file(), "the first run holds a lock while it runs"
    second = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
    assert first.poll() is None, "the first run was still going when the second was refused"
    assert second.exit_code == 2
    assert f"another run (PID {first.pid}) is writing to" in second.output
    first.send_signal(signal.SIGTERM)  # its lock goes with it (a finished run's too: the test below)
    _, errors = first.communicate(timeout=300)
    # 1 once training has begun (a checkpoint saved), 143 before: either way it says so.
    assert first.returncode in (1, 143) and "(SIGTERM)" in errors, errors[-2000:]
    assert not (out / ".lock").exists()


def test_a_lock_file_no_live_run_holds_never_refuses(tiny_roberta, eli5_jsonl, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("killed", dead.pid), ("init", 1)):  # a killed run's lock; one naming a live PID
        out = tmp_path / name
        out.mkdir()
        (out / ".lock").write_text(f"{pid}\n")
        result = run_cli(*train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir"))
        assert result.exit_code == 0, result.output
        assert (out / "all_results.json").is_file() and not (out / ".lock").exists()


def test_a_validation_file_inside_the_output_folder_is_named_not_lost(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "1")
    shutil.copy(eli5_jsonl, out / "validation.jsonl")
    before = digest(out)
    args = train_args(tiny_roberta, eli5_jsonl, out, "--overwrite-output-dir", "--validation-file")
    result = run_cli(*args, out / "validation.jsonl")
    assert result.exit_code == 2 and "validation.jsonl" in result.output.strip().splitlines()[-1]
    assert digest(out) == before
