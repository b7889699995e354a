"""The benchmark's outputs: results.json, a Markdown table with ratios, and a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.workloads import SIZES
from mlm_toolkit.metrics import perplexity

# Dense bf16 tensor-core peaks (FLOP/s) for model-FLOPs utilisation; None where unknown.
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def train_flops_per_token(size: str, block_size: int) -> float:
    """Model FLOPs per trained token: 6 x matmul parameters (encoder + full output layer) + attention."""
    shape = SIZES[size]
    h, layers, ffn, vocab = (
        shape["hidden_size"],
        shape["num_hidden_layers"],
        shape["intermediate_size"],
        shape["vocab_size"],
    )
    per_layer = 4 * h * h + 2 * h * ffn
    head = h * h + h * vocab
    attention = 2 * layers * block_size * h  # QK^T and AV, per token, forward
    return 6 * (layers * per_layer + head) + 6 * attention


def peak_flops(device: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK.items() if key in device), None)


def write_report(out: Path, report: dict) -> None:
    machine, workload, rows = report["machine"], report["workload"], report["results"]
    by_name = {r["name"]: r for r in rows}
    flops = train_flops_per_token(workload["size"], workload["block_size"])
    peak = peak_flops(machine["device"]) if machine["kind"] == "gpu" else None
    for row in rows:
        reference = by_name.get(row["reference"] or "")
        row["ratio_vs_reference"] = row["tokens_per_s"] / reference["tokens_per_s"] if reference else None
        row["mfu"] = row["tokens_per_s"] * flops / peak if peak else None
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")

    shape = SIZES[workload["size"]]
    lines = [
        f"# Training throughput: {machine['device']}, {machine['date']}",
        "",
        f"Model: `{workload['size']}` shape from config ({shape['num_hidden_layers']} layers x "
        f"{shape['hidden_size']}, {shape['vocab_size']:,}-word output layer); "
        f"global batch {workload['batch_size']} blocks of {workload['block_size']} tokens; built-in corpus; "
        f"{workload['warmup_steps']} warm-up steps then {workload['measured_steps']} measured steps per run; "
        f"median of {rows[0]['repeats'] if rows else 0} runs, each in its own process, in rounds of every "
        "configuration. Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + f", Python {machine['python']}.",
        "",
        measured_at(machine),
        "",
        "| configuration | tokens/s (min-max) | samples/s | step ms | vs reference | vs base | first step s "
        "| peak RSS MiB | peak GPU MiB | MFU | data wait | eval loss after | eval perplexity after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            f"{r['ratio_vs_reference']:.2f}x {r['reference']}"
            if r["ratio_vs_reference"]
            else "-"
            if r.get("base")
            else "reference"
        )
        vs_base = f"{r['vs_base']:.3f}x" if r.get("vs_base") else "base" if r.get("base") else "-"
        lines.append(
            f"| {r['name']} | {r['tokens_per_s']:,.0f} "
            f"({r['tokens_per_s_min']:,.0f}-{r['tokens_per_s_max']:,.0f}) "
            f"| {r['samples_per_s']:.1f} | {r['step_ms']:.0f} | {ratio} "
            f"| {vs_base} "
            f"| {r['time_to_first_step_s']:.1f} "
            f"| {r['peak_rss_mib']:,.0f} | {format(r['peak_gpu_mib'], ',.0f') if r['peak_gpu_mib'] else '-'} "
            f"| {format(r['mfu'], '.1%') if r['mfu'] else '-'} "
            f"| {format(r['data_wait_share'], '.1%') if r.get('data_wait_share') is not None else '-'} "
            f"| {r['eval_loss_after']:.3f} | {perplexity(r['eval_loss_after']):,.1f} |"
        )
    if machine.get("bf16") == "none":
        lines += [
            "",
            "This CPU has no native bf16 (no avx512_bf16/amx): bf16 would be emulated (PyTorch's about 20x",
            "slower than fp32), so the mixed-precision rows are left out (`--emulated-bf16` runs them).",
            "On such a CPU, train in fp32.",
        ]
    elif machine.get("bf16") == "emulated":
        lines += [
            "",
            "This CPU has no native bf16 (no avx512_bf16/amx): the bf16 rows time its emulation.",
            "Compare them with each other (pt-mlm against the Trainer at the same precision), not with fp32.",
        ]
    lines += [
        "",
        "Time to first step counts from the process start (imports, data, model, and for pt-mlm/tf-mlm the",
        "evaluation before training). Eval loss and perplexity are after the same steps, on the same frozen",
        "masked blocks, for every configuration: a faster row that learns worse shows here.",
        "Data wait is the share of step time pt-mlm spent waiting for its next masked batch",
        "(`--loader-workers`).",
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))
    plot(out / "throughput.png", rows, machine)


def measured_at(machine: dict) -> str:
    """The provenance line: commit, whether the tree was clean, the CPU and its flags, the base compared."""
    clean = {True: " (clean tree)", False: " (with uncommitted changes)"}.get(machine.get("tree_clean"), "")
    flags = ", ".join(machine.get("cpu_flags") or []) or "no flags read"
    line = f"Measured at commit {machine.get('commit') or 'unknown'}{clean}; CPU {machine.get('cpu')} ({flags})"
    if machine.get("base_commit"):
        line += f"; against base commit {machine['base_commit']}, rows `@ {machine['base_commit']}`, interleaved"
    return line + "."


def plot(path: Path, rows: list[dict], machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows][::-1]
    values = [r["tokens_per_s"] for r in rows][::-1]
    low = [r["tokens_per_s"] - r["tokens_per_s_min"] for r in rows][::-1]
    high = [r["tokens_per_s_max"] - r["tokens_per_s"] for r in rows][::-1]
    colours = ["#888888" if "guide" in n else ("#d9822b" if n.startswith("tf") else "#2b6cd9") for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    ax.barh(names, values, xerr=[low, high], color=colours, capsize=3)
    ax.set_xlabel("training tokens/s (median, min-max whiskers)")
    ax.set_title(f"MLM training throughput on {machine['device']}")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
