"""The benchmark harness runs end to end (a smoke run of two steps; no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import train_flops_per_token

ROOT = Path(__file__).resolve().parent.parent


def smoke_report(out, *args: str) -> dict:
    """A `--smoke` run of the benchmark on the CPU into `out`, and the report it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--device", "cpu", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_smoke_run_against_a_commit_writes_json_table_and_chart_with_each_ratio(tmp_path):
    """One run checks both: the reference and our row, and our row against the base tree, interleaved."""
    report = smoke_report(tmp_path, "--against", "HEAD")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    base = head.stdout.strip()
    names = [r["name"] for r in report["results"]]
    # The reference recipe is the same code in both trees: it runs once.
    assert names == ["Trainer (guide) fp32", "pt-mlm fp32", f"pt-mlm fp32 @ {base}"]
    assert list(report["runs"]) == ["Trainer (guide) fp32", "pt-mlm fp32", f"pt-mlm fp32 @ {base}"]
    ours = report["results"][1]
    assert ours["tokens_per_s"] > 0 and ours["ratio_vs_reference"] > 0 and ours["reference"] == names[0]
    assert 0 <= ours["data_wait_share"] < 1 and report["results"][0]["data_wait_share"] is None
    assert ours["vs_base"] > 0 and "vs_base" not in report["results"][0]
    machine = report["machine"]
    assert "CPU" in machine["device"] and machine["versions"]["torch"]
    assert machine["base_commit"] == base and machine["commit"] and machine["tree_clean"] in (True, False)
    assert machine["cpu"]
    table = (tmp_path / "results.md").read_text()
    assert "| pt-mlm fp32 |" in table and "x Trainer (guide) fp32" in table
    assert f"against base commit {base}" in table and "| vs base |" in table and f"{ours['vs_base']:.3f}x" in table
    assert (tmp_path / "throughput.png").stat().st_size > 5000


def test_model_flops_count_the_output_layer():
    # The 30k-word output layer of the small model is about half of its matmul work.
    small = train_flops_per_token("small", 128)
    assert 6 * (384 * 30522) / small == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("args, flag", [(["--only", "no such configuration"], "--only"), ([], "--out")])
def test_bad_input_names_the_flag_and_keeps_the_previous_report(tmp_path, args, flag):
    previous = tmp_path / "results.json"
    previous.write_text('{"kept": true}')
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--device", "cpu", "--out", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and flag in done.stderr, done.stderr
    assert previous.read_text() == '{"kept": true}'


def test_a_gpu_report_gives_mfu_against_the_bf16_peak(tmp_path):
    from dataclasses import asdict

    from benchmarks.report import write_report
    from benchmarks.workloads import Workload

    workload = Workload("distilroberta", 8, 128, 3, 10, 5000)
    row = {
        "name": "pt-mlm bf16",
        "path": "pt-mlm",
        "precision": "bf16",
        "flags": {},
        "reference": None,
        "tokens_per_s": 100_000.0,
        "tokens_per_s_min": 90_000.0,
        "tokens_per_s_max": 110_000.0,
        "samples_per_s": 781.25,
        "step_ms": 10.24,
        "time_to_first_step_s": 20.0,
        "peak_rss_mib": 3000.0,
        "peak_gpu_mib": 5000.0,
        "eval_loss_after": 10.0,
        "data_wait_share": 0.01,
        "repeats": 3,
    }
    machine = {
        "date": "2026-11-24",
        "device": "NVIDIA H100 80GB HBM3",
        "kind": "gpu",
        "python": "3.11",
        "bf16": "gpu",
        "versions": {"torch": "x"},
    }
    write_report(tmp_path, {"machine": machine, "workload": asdict(workload), "results": [row], "runs": {}})
    mfu = json.loads((tmp_path / "results.json").read_text())["results"][0]["mfu"]
    # Counted independently of the report's formula: the weights of every matmul of the real model
    # (encoder, MLM transform, output layer), 6 FLOPs each per trained token (2 forward, 4 backward),
    # plus the attention products QK^T and AV (2 x 128 x 768 per layer and token, x 6 for training).
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from benchmarks.workloads import SIZES

    with torch.device("meta"):
        model = BertForMaskedLM(BertConfig(**SIZES["distilroberta"]))
    matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    flops_per_token = 6 * matmul_weights + 6 * 6 * 2 * 128 * 768
    assert mfu == pytest.approx(100_000 * flops_per_token / 989e12, rel=1e-9)
    assert 0.04 < mfu < 0.06  # 100k tokens/s of an 82M-parameter model: about 5% of an H100's bf16 peak
    table = (tmp_path / "results.md").read_text()
    assert f"| {mfu:.1%} |" in table
    # Beside the speed, what the row learned: eval loss 10.0 is a perplexity of e^10 = 22,026.5.
    assert "| 10.000 | 22,026.5 |" in table


def test_the_data_benchmark_writes_corpora_the_toolkit_reads_and_a_report(tmp_path):
    import os

    from benchmarks.data import tree_memory, write_corpus, write_long_row_corpus, write_report
    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.data_sources import load_splits

    corpus = write_corpus(tmp_path / "eli5-300.jsonl", 300)
    splits = load_splits(DataConfig(dataset=str(corpus), max_samples=None), seed=0)
    assert splits.text_column == "answers.text" and len(splits.train) + len(splits.held_out) == 300
    assert 1000 < corpus.stat().st_size / 300 < 2500, "about 1.5 kB a row"
    resident, anonymous = tree_memory(os.getpid())
    assert resident >= anonymous > 10 * 2**20, "this process's own memory, counted"
    row = {"rows": 300, "workers": 1, "seconds": 2.0, "blocks": 100, "peak_rss_mib": 700.0, "peak_anon_mib": 500.0}
    rows = [
        {**row, "name": "ours, 1 worker(s)", "recipe": "ours", "tokens_per_s": 6400.0},
        {**row, "name": "guide, 1 worker(s)", "recipe": "guide", "tokens_per_s": 3200.0, "cache_mib": 2.0},
    ]
    rows[0]["cache_mib"] = 1.0
    long = {**row, "rows": 20, "name": "ours, one 2 MB row", "recipe": "long", "long_row_mb": 2, "cache_mib": 1}
    long["commit"] = "0123456789abcdef"  # measured at an earlier commit, merged into this report
    rows.append({**long, "tokens_per_s": 1.0})
    write_report(tmp_path, {"machine": {"cpu": "x", "cores": 2, "date": "d", "python": "3"}, "results": rows})
    table = (tmp_path / "results.md").read_text()
    assert "| 300 | ours, 1 worker(s) | 2.0 | 6,400 | 2.00x | 700 | 500 | 1 | 100 |" in table
    assert "Hostile input, ours, one 2 MB row (at 01234567): 2 MB in one row" in table and "| 20 |" not in table
    assert "ours, one 2 MB row (at 01234567)" in table and "ours, 1 worker(s) (at" not in table
    hostile = write_long_row_corpus(tmp_path / "long.jsonl", 2)
    splits = load_splits(DataConfig(dataset=str(hostile), max_samples=None, test_size=0.05), seed=0)
    assert max(len(text) for split in (splits.train, splits.held_out) for text in split["text"]) >= 2 * 10**6
    assert (tmp_path / "data.png").stat().st_size > 1000


def test_only_takes_whole_names_alone_and_parts_as_before():
    from benchmarks.run import configurations, select

    specs = configurations(gpu=False, bf16=False)
    assert [s["name"] for s in select(specs, "pt-mlm fp32")] == ["pt-mlm fp32"]
    assert len(select(specs, "pt-mlm fp32,Keras")) == 2
    assert {s["name"] for s in select(specs, "pt-mlm fp32 ")} == {"pt-mlm fp32"}
    assert len(select(specs, "pt-mlm")) > 3  # a part of names: every configuration it is part of


def test_repeats_run_in_rounds_so_a_reference_and_its_rows_meet_the_same_machine(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from benchmarks import run as bench

    order = []

    def fake_run(spec, workload, model, scratch, device, tree=bench.ROOT):
        order.append(spec["name"])
        seconds = [1.0 if spec["path"] == "trainer" else 0.5] * workload.total_steps
        return {
            "step_seconds": seconds,
            "warm_step_seconds": seconds[workload.warmup_steps :],
            "time_to_first_step": 5.0,
            "eval_loss_after": 10.0,
            "peak_rss_mib": 100.0,
            "peak_gpu_mib": None,
            "data_wait_seconds": None,
            "versions": {"torch": "x"},
        }

    monkeypatch.setattr(bench, "run_one", fake_run)
    monkeypatch.setattr(bench, "build_model_folder", lambda size, folder: tmp_path)
    only = "Trainer (guide) fp32,pt-mlm fp32"
    args = ["--device", "cpu", "--repeats", "2", "--only", only, "--out", str(tmp_path / "report")]
    done = CliRunner().invoke(bench.main, args)
    assert done.exit_code == 0, done.output
    assert order == ["Trainer (guide) fp32", "pt-mlm fp32"] * 2
    rows = json.loads((tmp_path / "report" / "results.json").read_text())["results"]
    assert rows[1]["ratio_vs_reference"] == pytest.approx(2.0) and rows[1]["repeats"] == 2
