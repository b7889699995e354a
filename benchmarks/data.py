"""Data-preparation benchmark: how preparing a corpus scales with its size and with worker processes.

    python -m benchmarks.data                       # 10k, 100k and 1M rows (about an hour on 2 cores)
    python -m benchmarks.data --rows 10000,100000 --workers 1,2 --out benchmarks/results/data-small
    python -m benchmarks.data --smoke               # 2,000 rows, one run each: checks the harness

Corpora are ELI5-shaped jsonl files (`title`, `answers.text` lists) written from the built-in corpus's
answers, about 1.5 kB a row as in the 152 MB, 100,000-row file of issue 15. For each size, in its own process
with empty caches, each job is timed and its peak memory sampled (the whole process tree, workers included):
- `ours`: `mlm_toolkit.blocks.prepare_data` (datasets map in N workers, blocks in a memory-mapped file);
- `guide`: the guide's recipe (`train_test_split`, `flatten`, `map(preprocess)` and `map(group_texts)`, both
  with `num_proc` N), on the same file and tokenizer;
- `ours --streaming`: `mlm_toolkit.streaming.prepare_stream` and the first 20,000 blocks of the stream;
- `pt-mlm train`: the whole CLI run on the built-in encoder, preparation included, for --max-steps steps.
Peak memory is given twice, as proportional set sizes (a page shared by forked workers counted once): all
resident pages, memory-mapped file pages included (the kernel's to drop), and anonymous ones (what the
processes hold themselves). Disk is what the caches hold after.
Writes results.json, results.md and data.png.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from benchmarks.data_worker import STREAMED_BLOCKS
from benchmarks.run import provenance

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "benchmarks" / "scratch"
RECIPES = ("ours", "guide", "stream", "train", "long")  # the jobs, in the order a report lists them
# Reading a process's proportional set size walks its page tables: about 3 ms for a 1 GB process, so
# sampling three processes every 50 ms took a fifth of a core from the jobs, and most from those with two
# workers on two cores (which then looked slower than they are).
SAMPLE_SECONDS = 0.25


def write_corpus(path: Path, rows: int, seed: int = 0) -> Path:
    """An ELI5-shaped jsonl of `rows` rows made of the built-in corpus's answers."""
    import random

    from mlm_toolkit.data_sources import builtin_eli5_rows

    if path.is_file():
        return path
    sentences = [answer for row in builtin_eli5_rows() for answer in row["answers"]["text"]]
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w") as f:
        for n in range(rows):
            answers = [" ".join(rng.choices(sentences, k=rng.randint(4, 9))) for _ in range(rng.randint(2, 5))]
            f.write(json.dumps({"q_id": f"q{n}", "title": rng.choice(sentences), "answers": {"text": answers}}))
            f.write("\n")
    partial.replace(path)
    return path


def write_long_row_corpus(path: Path, megabytes: int) -> Path:
    """A hostile corpus: 19 short rows and one whose single answer is `megabytes` MB of text."""
    if path.is_file():
        return path
    short = write_corpus(SCRATCH / "eli5-19.jsonl", 19).read_text()
    sentence = "the cat sees a dog because it is happy, then the dog reads a book again. "
    text = (sentence * (megabytes * 10**6 // len(sentence) + 1))[: megabytes * 10**6]
    partial = path.with_suffix(".partial")
    partial.write_text(short + json.dumps({"q_id": "long", "title": "long", "answers": {"text": [text]}}) + "\n")
    partial.replace(path)
    return path


def tree_memory(pid: int) -> tuple[int, int]:
    """(resident, anonymous resident) bytes of a process and all its descendants, from /proc: proportional
    set sizes (Pss), so pages forked workers share with their parent are counted once, not once a process."""
    import psutil

    total = anonymous = 0
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for process in processes:
        try:
            rollup = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
        except OSError:
            continue
        fields = {key: value for key, _, value in (line.partition(":") for line in rollup.splitlines())}
        total += int(fields.get("Pss", "0 kB").split()[0]) * 1024
        anonymous += int(fields.get("Pss_Anon", "0 kB").split()[0]) * 1024
    return total, anonymous


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def run_job(job: dict, work: Path) -> dict:
    """One job in a fresh process with empty caches, its process tree's memory sampled every
    `SAMPLE_SECONDS`."""
    caches = work / "caches"
    shutil.rmtree(caches, ignore_errors=True)
    env = {
        **os.environ,
        "HF_DATASETS_CACHE": str(caches / "datasets"),
        "MLM_CACHE_DIR": str(caches / "mlm"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",  # workers are the only parallelism, in both recipes
        "USE_TF": "0",  # no job needs TensorFlow; transformers would import it with its collators
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),  # the caller's kept
    }
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.data_worker", json.dumps(job)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peaks = [0, 0]

    def sample() -> None:
        while child.poll() is None:
            rss, anonymous = tree_memory(child.pid)
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], anonymous)
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise click.ClickException(f"{job['name']} failed: {stderr.strip().splitlines()[-1:]}")
    result = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {
        **job,
        **result,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_mib": peaks[0] / 2**20,
        "peak_anon_mib": peaks[1] / 2**20,
        "cache_mib": folder_bytes(caches) / 2**20,
        "commit": provenance()["commit"],  # a row merged into a later report keeps its own
    }


def jobs(rows: int, workers: list[int], corpus: Path, train_steps: int) -> list[dict]:
    base = {"rows": rows, "corpus": str(corpus)}
    listed = []
    for count in workers:
        listed.append({**base, "name": f"ours, {count} worker(s)", "recipe": "ours", "workers": count})
        listed.append({**base, "name": f"guide, {count} worker(s)", "recipe": "guide", "workers": count})
    listed.append(  # the stream is read for a fixed number of blocks: its time does not grow with the corpus
        {**base, "name": f"ours --streaming, first {STREAMED_BLOCKS:,} blocks", "recipe": "stream", "workers": 1}
    )
    if train_steps:
        listed.append({**base, "name": "pt-mlm train", "recipe": "train", "workers": 1, "steps": train_steps})
    return listed


def write_report(out: Path, report: dict) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    machine, rows = report["machine"], report["results"]
    long = [r for r in rows if r["recipe"] == "long"]  # one corpus, not a size: a line of its own

    def named(row: dict) -> str:  # a row carried over from an earlier commit says which
        commit = row.get("commit")
        return row["name"] + (f" (at {commit[:8]})" if commit and commit != machine.get("commit") else "")

    rows = [r for r in rows if r["recipe"] != "long"]
    lines = [
        f"# Data preparation: {machine['cpu']} ({machine['cores']} cores), {machine['date']}",
        "",
        f"Measured at commit {(machine.get('commit') or 'unknown')[:8]}"
        f"{'' if machine.get('tree_clean', True) else ' with uncommitted changes'}.",
        "",
        "ELI5-shaped jsonl corpora (about 1.5 kB a row) made from the built-in corpus, the built-in "
        "encoder's BERT tokenizer, block size 128, 20% held out; each job in a fresh process with empty "
        "caches. "
        "`pt-mlm train` includes preparation and trains "
        f"{next((r['steps'] for r in rows if r['recipe'] == 'train'), 0)} steps (`--max-eval-samples 1000`). "
        "Peak memory is the process tree's proportional set size (a page forked workers share counted once): "
        "all resident pages, the memory-mapped Arrow files' included (the kernel may drop those at any "
        "time), and the anonymous ones, what the processes hold themselves; sampled every "
        f"{SAMPLE_SECONDS:g} s.",
        "",
        "| rows | job | seconds | tokens/s | vs guide | peak resident MiB | peak anonymous MiB | cache MiB | blocks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        guide = next(
            (
                g
                for g in rows
                if g["recipe"] == "guide" and g["rows"] == row["rows"] and g["workers"] == row["workers"]
            ),
            None,
        )
        ratio = f"{row['tokens_per_s'] / guide['tokens_per_s']:.2f}x" if guide and row["recipe"] == "ours" else ""
        lines.append(
            f"| {row['rows']:,} | {named(row)} | {row['seconds']:,.1f} | {row['tokens_per_s']:,.0f} "
            f"| {ratio} "
            f"| {row['peak_rss_mib']:,.0f} | {row['peak_anon_mib']:,.0f} | {row['cache_mib']:,.0f} "
            f"| {row['blocks']:,} |"
        )
    trained = [r for r in rows if r.get("training_peak_anon_mib")]
    if trained:
        lines += [
            "",
            "`pt-mlm train`, its peak memory over the whole run and from the evaluation before training on "
            "(training alone, the prepared rows' tables let go; resident is the process's own high-water "
            "mark, VmHWM, exact; anonymous sampled every quarter second):",
            "",
            "| rows | whole run: resident / anonymous MiB | training: resident / anonymous MiB |",
            "|---|---|---|",
        ]
        for row in trained:
            lines.append(
                f"| {row['rows']:,} | {row['peak_rss_mib']:,.0f} / {row['peak_anon_mib']:,.0f} "
                f"| {row['training_peak_rss_mib']:,.0f} / {row['training_peak_anon_mib']:,.0f} |"
            )
    for row in long:
        lines += [
            "",
            f"Hostile input, {named(row)}: {row['long_row_mb']} MB in one row and 19 short rows, prepared in "
            f"{row['seconds']:,.1f} s, peak resident {row['peak_rss_mib']:,.0f} MiB, anonymous "
            f"{row['peak_anon_mib']:,.0f} MiB, {row['blocks']:,} blocks.",
        ]
    lines += ["", "![peak memory and preparation time](data.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    plot(out / "data.png", rows)


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n, name in enumerate(sorted({r["name"] for r in rows})):
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["rows"])
        sizes, color = [r["rows"] for r in mine], f"C{n}"  # one color a job, in both panels
        memory.plot(sizes, [r["peak_anon_mib"] for r in mine], "o-", label=name, color=color)
        if mine[0]["recipe"] in ("ours", "guide"):
            speed.plot(sizes, [r["tokens_per_s"] for r in mine], "o-", label=name, color=color)
    for axis, label in ((memory, "peak anonymous memory (MiB, Pss)"), (speed, "preparation tokens/s")):
        axis.set_xscale("log")
        axis.set_xlabel("rows in the corpus")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--rows", default="10000,100000,1000000", show_default=True, help="Corpus sizes, in rows.")
@click.option("--workers", default="1,2", show_default=True, help="Worker counts of the map recipes.")
@click.option(
    "--train-steps",
    default=100,
    show_default=True,
    help="Steps of the pt-mlm train job (0: none): enough for the heap's growth over steps to show.",
)
@click.option("--out", default=None, help="Report folder (default: benchmarks/results/data, the current report).")
@click.option("--overwrite", is_flag=True, help="Replace a report folder that already holds results.json.")
@click.option(
    "--only", default=None, help="Run only these jobs: comma-separated among ours, guide, stream, train, long."
)
@click.option("--merge", is_flag=True, help="Add to the report in --out, replacing its rows of the jobs run again.")
@click.option(
    "--long-row-mb", default=50, show_default=True, help="Also prepare a corpus with one row this large (0: none)."
)
@click.option("--smoke", is_flag=True, help="2,000 rows, one worker, two steps: checks the harness.")
def main(
    rows: str,
    workers: str,
    train_steps: int,
    out: str | None,
    overwrite: bool,
    only: str | None,
    merge: bool,
    long_row_mb: int,
    smoke: bool,
) -> None:
    """Time and measure data preparation at several corpus sizes, ours against the guide's recipe."""
    try:
        sizes = [int(n) for n in rows.split(",")]
        counts = [int(n) for n in workers.split(",")]
    except ValueError as error:
        raise click.BadParameter(
            "comma-separated whole numbers, e.g. 10000,100000", param_hint="--rows/--workers"
        ) from error
    if smoke:
        sizes, counts, train_steps, long_row_mb = [2000], [1], 2, min(long_row_mb, 2)
    folder = Path(out or ROOT / "benchmarks" / "results" / "data")
    if (folder / "results.json").exists() and not (overwrite or merge):
        raise click.UsageError(f"{folder} holds a report already; pass --overwrite, --merge or another --out")
    if merge and not (folder / "results.json").exists():
        raise click.UsageError(f"{folder} holds no report to merge into", None)
    recipes = set(only.split(",")) if only else set(RECIPES)
    if not recipes <= set(RECIPES):
        raise click.BadParameter("comma-separated among " + ", ".join(RECIPES), param_hint="--only")
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes:
        corpus = write_corpus(SCRATCH / f"eli5-{size}.jsonl", size)
        for job in (j for j in jobs(size, counts, corpus, train_steps) if j["recipe"] in recipes):
            click.echo(f"{size:,} rows: {job['name']} ...", err=True)
            results.append(run_job(job, SCRATCH / "work"))
            click.echo(
                f"  {results[-1]['seconds']:.1f} s, {results[-1]['tokens_per_s']:,.0f} tokens/s, "
                f"peak {results[-1]['peak_rss_mib']:,.0f} MiB "
                f"({results[-1]['peak_anon_mib']:,.0f} anonymous)",
                err=True,
            )
    if long_row_mb and "long" in recipes:
        corpus = write_long_row_corpus(SCRATCH / f"long-row-{long_row_mb}mb.jsonl", long_row_mb)
        job = {"rows": 20, "corpus": str(corpus), "name": f"ours, one {long_row_mb} MB row", "recipe": "long"}
        click.echo(f"{job['name']} ...", err=True)
        results.append(run_job({**job, "workers": 1, "long_row_mb": long_row_mb}, SCRATCH / "work"))
    machine = {
        **provenance(),
        "date": str(dt.date.today()),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    if merge:  # the rows of the jobs run again replace their earlier ones
        earlier = json.loads((folder / "results.json").read_text())["results"]
        again = {(r["rows"], r["name"]) for r in results}
        results = [r for r in earlier if (r["rows"], r["name"]) not in again] + results
        results.sort(key=lambda r: (r["rows"], RECIPES.index(r["recipe"]), r["workers"]))
    write_report(folder, {"machine": machine, "results": results})
    click.echo(f"wrote {folder / 'results.md'}")


if __name__ == "__main__":
    main()
