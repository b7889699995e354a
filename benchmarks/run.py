"""Training-throughput benchmark: pt-mlm and tf-mlm against the guide's Trainer and Keras recipes.

    python -m benchmarks.run                      # the device it finds: CPU: small model, GPU: DistilRoBERTa
    python -m benchmarks.run --device cpu --repeats 3 --out benchmarks/results/cpu-small
    python -m benchmarks.run --smoke              # two steps of two configurations, to check the harness
    python -m benchmarks.run --against main --only "pt-mlm fp32"   # this tree against a commit, interleaved

Every configuration trains the same model (built from config), the same blocks of the built-in corpus,
the same block size and global batch, in its own process, `--repeats` times. Only warm steps (after
`--warmup` steps, so after compilation) count towards tokens/s; time-to-first-step counts from the
process start, imports included. Writes results.json, results.md (table with ratios) and throughput.png.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from benchmarks.report import write_report
from benchmarks.workloads import SIZES, Workload, build_model_folder

ROOT = Path(__file__).resolve().parent.parent


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively; without it, bf16 is emulated and far slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def configurations(gpu: bool, bf16: bool) -> list[dict]:
    """(name, path, precision, flags) of every run; `reference` names the recipe a ratio is taken against.

    Each speed feature is measured on its own against the default path, and each precision against the
    reference recipe at that precision. The bf16 rows need a GPU or a CPU with native bf16 (`bf16`):
    PyTorch's emulated bf16 runs about 20x slower than fp32 on a CPU without it (TensorFlow's far less), and
    would mostly time the emulation.
    """
    fp32 = {"reference": "Trainer (guide) fp32"}
    rows = [
        {"name": "Trainer (guide) fp32", "path": "trainer", "precision": "no"},
        {"name": "pt-mlm fp32", "path": "pt-mlm", "precision": "no", **fp32},
        {
            "name": "pt-mlm fp32 dense head",
            "path": "pt-mlm",
            "precision": "no",
            "flags": {"sparse_head": False},
            **fp32,
        },
        {
            "name": "pt-mlm fp32 eager attention",
            "path": "pt-mlm",
            "precision": "no",
            "flags": {"attention": "eager"},
            **fp32,
        },
        {
            "name": "pt-mlm fp32 no workarounds",
            "path": "pt-mlm",
            "precision": "no",
            "flags": {"workarounds": False},
            **fp32,
        },
        {
            "name": "pt-mlm fp32 unfused AdamW",
            "path": "pt-mlm",
            "precision": "no",
            "flags": {"fused_adamw": False},
            **fp32,
        },
        {"name": "pt-mlm fp32 compile", "path": "pt-mlm", "precision": "no", "flags": {"torch_compile": True}, **fp32},
    ]
    if bf16:
        rows += [
            {"name": "Trainer (guide) bf16", "path": "trainer", "precision": "bf16"},
            {"name": "pt-mlm bf16", "path": "pt-mlm", "precision": "bf16", "reference": "Trainer (guide) bf16"},
        ]
    if gpu:
        rows += [
            {
                "name": "pt-mlm bf16 compile",
                "path": "pt-mlm",
                "precision": "bf16",
                "flags": {"torch_compile": True},
                "reference": "Trainer (guide) bf16",
            },
            {"name": "Trainer (guide) fp16", "path": "trainer", "precision": "fp16"},
            {"name": "pt-mlm fp16", "path": "pt-mlm", "precision": "fp16", "reference": "Trainer (guide) fp16"},
        ]
    keras = {"reference": "Keras (guide) fp32"}
    rows += [
        {"name": "Keras (guide) fp32", "path": "keras", "precision": "no"},
        {"name": "tf-mlm fp32", "path": "tf-mlm", "precision": "no", **keras},
        {
            "name": "tf-mlm fp32 dense head",
            "path": "tf-mlm",
            "precision": "no",
            "flags": {"sparse_head": False},
            **keras,
        },
        {"name": "tf-mlm fp32 XLA", "path": "tf-mlm", "precision": "no", "flags": {"jit_compile": True}, **keras},
    ]
    if bf16:
        rows.append({"name": "tf-mlm mixed_bfloat16", "path": "tf-mlm", "precision": "mixed_bfloat16", **keras})
    if gpu:
        rows += [
            {
                "name": "tf-mlm mixed_bfloat16 XLA",
                "path": "tf-mlm",
                "precision": "mixed_bfloat16",
                "flags": {"jit_compile": True},
                **keras,
            },
            {
                "name": "tf-mlm mixed_float16 XLA",
                "path": "tf-mlm",
                "precision": "mixed_float16",
                "flags": {"jit_compile": True},
                **keras,
            },
        ]
    return rows


def select(specs: list[dict], only: str) -> list[dict]:
    """--only: a name given whole selects that configuration alone; a part of names, all it is part of."""
    parts, names = [part.strip() for part in only.split(",")], {s["name"] for s in specs}
    return [s for s in specs if any(p == s["name"] or (p not in names and p in s["name"]) for p in parts)]


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None (asked of nvidia-smi, so no framework is imported here)."""
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return lines[0] if lines else None


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def provenance() -> dict:
    """What a figure was measured at: the commit, whether the tree held changes, the CPU and its flags."""
    try:
        commit, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = sorted({f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2") if f in info.split()})
    except (OSError, StopIteration):
        cpu, flags = platform.processor() or None, []
    return {"commit": commit, "tree_clean": None if dirty is None else not dirty, "cpu": cpu, "cpu_flags": flags}


def checkout(rev: str, scratch: Path) -> tuple[Path, str]:
    """The tree of commit `rev` in a folder of its own (git archive), importable as it installs: its
    `shared/` as `mlm_toolkit`. Returns (folder, the commit's short hash)."""
    try:
        commit = git("rev-parse", "--short", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise click.BadParameter(f"{rev!r} is no commit of this repository", param_hint="--against") from None
    folder = scratch / f"base-{commit}"
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        (partial / ".import").mkdir()
        (partial / ".import" / "mlm_toolkit").symlink_to(Path("..") / "shared")
        partial.rename(folder)
    return folder, commit


def run_one(spec: dict, workload: Workload, model: Path, scratch: Path, device: str, tree: Path = ROOT) -> dict:
    """One process of `spec`, with the code of `tree` (this checkout, or a base commit's)."""
    scratch.mkdir(parents=True, exist_ok=True)
    out_file = scratch / f"{abs(hash((spec['name'], time.time())))}.json"
    # This checkout imports mlm_toolkit through its install; a base tree through its own folder, first.
    # An inherited PYTHONPATH stays after them (benchmarks/device.sh installs what it carries there).
    path = [str(tree)] if tree == ROOT else [str(tree / ".import"), str(tree)]
    path += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MLM_CACHE_DIR": str(scratch / "cache"),
        "PYTHONPATH": os.pathsep.join(path),
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    # One framework per process: the other one is not even imported.
    tensorflow = spec["path"] in ("keras", "tf-mlm")
    env.update(USE_TF="1" if tensorflow else "0", USE_TORCH="0" if tensorflow else "1")
    command = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        json.dumps(spec),
        json.dumps(asdict(workload)),
        str(model),
        str(out_file),
        str(time.time()),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise click.ClickException(f"{spec['name']} failed:\n{done.stderr[-3000:]}")
    return json.loads(out_file.read_text())


def summarise(spec: dict, runs: list[dict], workload: Workload) -> dict:
    tokens_per_step = workload.batch_size * workload.block_size
    throughputs = [tokens_per_step / statistics.median(r["warm_step_seconds"]) for r in runs]
    return {
        "name": spec["name"],
        "path": spec["path"],
        "precision": spec["precision"],
        "flags": spec.get("flags", {}),
        "reference": spec.get("reference"),
        "tokens_per_s": statistics.median(throughputs),
        "tokens_per_s_min": min(throughputs),
        "tokens_per_s_max": max(throughputs),
        "samples_per_s": statistics.median(throughputs) / workload.block_size,
        "step_ms": 1000 * statistics.median(s for r in runs for s in r["warm_step_seconds"]),
        "time_to_first_step_s": statistics.median(r["time_to_first_step"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "peak_gpu_mib": max((r["peak_gpu_mib"] or 0) for r in runs) or None,
        "eval_loss_after": statistics.median(r["eval_loss_after"] for r in runs),
        # Share of the step time spent waiting for the next batch (data loading starving the step).
        "data_wait_share": statistics.median(r["data_wait_seconds"] / sum(r["step_seconds"]) for r in runs)
        if all(r.get("data_wait_seconds") is not None for r in runs)
        else None,
        "repeats": len(runs),
    }


@click.command()
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True)
@click.option(
    "--size",
    type=click.Choice(["auto", *SIZES]),
    default="auto",
    show_default=True,
    help="Model shape (auto: small on CPU, distilroberta on GPU, tiny with --smoke).",
)
@click.option("--batch-size", default=8, show_default=True, help="Global batch in blocks (one device).")
@click.option("--block-size", default=128, show_default=True)
@click.option("--warmup", default=3, show_default=True, help="Steps not counted (compilation, caches).")
@click.option("--steps", default=10, show_default=True, help="Warm steps measured per run.")
@click.option("--repeats", default=3, show_default=True, help="Processes per configuration; the median is reported.")
@click.option(
    "--only",
    default="",
    help="Comma-separated configuration names to run (a name given whole selects that one alone; a part "
    "of names selects every configuration it is part of).",
)
@click.option(
    "--against",
    default=None,
    help="A commit to compare with: each configuration also runs on that commit's code, interleaved with "
    "this tree's, and each row gets its ratio to the base.",
)
@click.option(
    "--emulated-bf16",
    is_flag=True,
    help="Also run the bf16 rows on a CPU without native bf16 (PyTorch's about 20x slower than fp32 there).",
)
@click.option("--smoke", is_flag=True, help="Two steps of two configurations, tiny shape: checks the harness.")
@click.option("--out", "out_dir", default=None, help="Report folder (default benchmarks/results/DEVICE-SIZE).")
@click.option("--overwrite", is_flag=True, help="Replace the report already in --out.")
def main(
    device,
    size,
    batch_size,
    block_size,
    warmup,
    steps,
    repeats,
    only,
    emulated_bf16,
    smoke,
    out_dir,
    overwrite,
    against,
) -> None:
    """Measure training throughput of each configuration and write a readable report."""
    name = gpu_name()
    if device == "auto":
        device = "gpu" if name else "cpu"
    if device == "gpu" and not name:
        raise click.UsageError("--device gpu: no NVIDIA GPU visible (nvidia-smi found none)")
    if size == "auto":
        size = "tiny" if smoke else "distilroberta" if device == "gpu" else "small"
    bf16 = device == "gpu" or cpu_has_bf16() or emulated_bf16
    specs = configurations(device == "gpu", bf16)
    if only:
        specs = select(specs, only)
        if not specs:
            raise click.BadParameter("matches no configuration on this device", param_hint="--only")
    if smoke:
        specs = [s for s in specs if s["name"] in ("Trainer (guide) fp32", "pt-mlm fp32")]
        warmup, steps, repeats = 1, 1, 1
    workload = Workload(size, batch_size, block_size, warmup, steps, max_samples=600 if smoke else 5000)
    stamp = dt.date.today().isoformat()
    out = Path(out_dir or ROOT / "benchmarks" / "results" / f"{device}-{size}")
    if (out / "results.json").exists() and not overwrite:  # a committed report is a measurement: keep it
        raise click.BadParameter(
            f"{out} already holds a report; choose another folder or pass --overwrite", param_hint="--out"
        )
    out.mkdir(parents=True, exist_ok=True)
    scratch = ROOT / "benchmarks" / "scratch"
    model = build_model_folder(size, scratch / f"model-{size}")

    base, base_commit = checkout(against, scratch) if against else (None, None)
    trees = {"": ROOT, **({f" @ {base_commit}": base} if base else {})}
    # A reference recipe is the same code in both trees: it runs once, only our paths against their base.
    tree_of = {spec["name"]: trees if spec.get("reference") else {"": ROOT} for spec in specs}
    raw = {spec["name"] + suffix: [] for spec in specs for suffix in tree_of[spec["name"]]}
    # In rounds, each configuration (and its base) once a round: a reference and the rows compared with it
    # meet the same machine, however its speed drifts during the run.
    for repeat in range(repeats):
        for spec in specs:
            click.echo(f"{spec['name']}: run {repeat + 1}/{repeats}", err=True)
            for suffix, tree in tree_of[spec["name"]].items():
                raw[spec["name"] + suffix].append(run_one(spec, workload, model, scratch, device, tree=tree))
    rows = []
    for spec in specs:
        rows.append(summarise(spec, raw[spec["name"]], workload))
        if base and spec.get("reference"):
            base_name = f"{spec['name']} @ {base_commit}"
            base_spec = {**spec, "name": base_name, "reference": None}
            rows.append({**summarise(base_spec, raw[base_name], workload), "base": True})
            rows[-2]["vs_base"] = rows[-2]["tokens_per_s"] / rows[-1]["tokens_per_s"]
            click.echo(f"{spec['name']}: {rows[-2]['vs_base']:.3f}x {base_commit}", err=True)
    machine = {
        "date": stamp,
        "device": name or f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "kind": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "bf16": "gpu" if device == "gpu" else ("native" if cpu_has_bf16() else ("emulated" if bf16 else "none")),
        "versions": next(iter(raw.values()))[0]["versions"] if raw else {},
        **provenance(),
        "base_commit": base_commit,
    }
    report = {"machine": machine, "workload": asdict(workload), "results": rows, "runs": raw}
    write_report(out, report)
    click.echo(f"wrote {out / 'results.md'}")


if __name__ == "__main__":
    main()
