"""Does each path learn as well as the guide's Trainer? Eval perplexity after the same steps, same start.

    python -m benchmarks.fidelity                      # 3 training seeds, about 30 min on 2 CPU cores
    python -m benchmarks.fidelity --seeds 42 --steps 50 --out /tmp/quick
    # an ablation:
    python -m benchmarks.fidelity --seeds 42 --recipes pt-mlm --max-grad-norm 0 --out /tmp/unclipped

The corpus is one the project never trains on elsewhere: the Python language reference as shipped in
every CPython (`pydoc_data.topics`), cut into paragraphs, one row each. The start is one saved folder:
the built-in MiniLM encoder with its fresh MLM head initialised once, so all three begin from the
very same weights. Each recipe then trains in its own process, with its own masking and dropout:
- Trainer: the guide's PyTorch recipe (Trainer + DataCollatorForLanguageModeling) on our blocks;
- pt-mlm and tf-mlm: the toolkit's defaults.
One evaluator scores every final model: PyTorch, the token-weighted mean loss over the frozen masked
eval blocks (tf-mlm's folder carries PyTorch weights as well).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

RECIPES = ("Trainer (guide)", "pt-mlm", "tf-mlm")
LEARNING_RATE, BATCH, BLOCK = (1e-4, 8, 128)  # a fresh head learns little at the guide's 2e-5 in a few hundred steps


def write_corpus(path: Path) -> Path:
    from pydoc_data.topics import topics

    paragraphs = [p.strip() for text in topics.values() for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 8]
    with path.open("w") as f:
        for paragraph in paragraphs:
            f.write(json.dumps({"text": " ".join(paragraph.split())}) + "\n")
    return path


def write_start(folder: Path) -> Path:
    """The built-in encoder with a fresh MLM head, initialised once and saved for both frameworks."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mlm_toolkit.config import BUILTIN_MODEL
    from mlm_toolkit.convert import add_tensorflow_weights
    from mlm_toolkit.models import resolve_model

    source = resolve_model(BUILTIN_MODEL).location
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_pretrained(source).save_pretrained(folder, safe_serialization=False)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    if not add_tensorflow_weights(folder):
        raise SystemExit("could not write Keras weights for the start folder")
    return folder


def run_config(corpus: Path, start: Path, out: Path, steps: int, seed: int, max_grad_norm: float = 1.0):
    from mlm_toolkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        DataConfig(dataset=str(corpus), text_column="text", max_samples=None, block_size=BLOCK),
        ModelConfig(model=str(start)),
        TrainConfig(
            output_dir=str(out),
            per_device_batch_size=BATCH,
            learning_rate=LEARNING_RATE,
            max_steps=steps,
            seed=seed,
            eval_batch_size=32,
            max_grad_norm=max_grad_norm,
        ),
    )


def train_one(recipe: str, corpus: Path, start: Path, out: Path, steps: int, seed: int, max_grad_norm: float) -> None:
    """Train one recipe in this process and leave its final PyTorch weights in `out`."""
    run = run_config(corpus, start, out, steps, seed, max_grad_norm)
    if recipe == "pt-mlm":
        import pt_mlm

        pt_mlm.train(run, pt_mlm.PTOptions(tf_weights=False))
    elif recipe == "tf-mlm":
        import tf_mlm

        tf_mlm.train(run, tf_mlm.TFOptions())
    else:
        from transformers import (
            AutoModelForMaskedLM,
            AutoTokenizer,
            DataCollatorForLanguageModeling,
            Trainer,
            TrainingArguments,
        )

        from mlm_toolkit.data import prepare_data

        tokenizer = AutoTokenizer.from_pretrained(start)
        data = prepare_data(run.data, tokenizer, seed)
        args = TrainingArguments(
            output_dir=str(out / "trainer"),
            per_device_train_batch_size=BATCH,
            learning_rate=LEARNING_RATE,
            weight_decay=0.01,
            max_steps=steps,
            save_strategy="no",
            report_to=[],
            logging_steps=10**6,
            seed=seed,
            use_cpu=True,
            disable_tqdm=True,
            max_grad_norm=max_grad_norm,
        )
        trainer = Trainer(
            model=AutoModelForMaskedLM.from_pretrained(start),
            args=args,
            train_dataset=data.train_blocks.dataset,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
        )
        trainer.train()
        trainer.model.save_pretrained(out, safe_serialization=False)


def shared_evaluation(folder: Path, corpus: Path, start: Path, seed: int) -> float:
    """The token-weighted mean loss of the PyTorch weights in `folder` on the frozen eval blocks of `seed`."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mlm_toolkit.data import prepare_data
    from pt_mlm.model import MaskedTokenLoss

    data = prepare_data(run_config(corpus, start, folder, 1, seed).data, AutoTokenizer.from_pretrained(start), seed)
    net = MaskedTokenLoss(AutoModelForMaskedLM.from_pretrained(folder)).eval()
    total = count = 0.0
    with torch.no_grad():
        for first in range(0, len(data.eval_inputs["input_ids"]), 32):
            batch = {k: torch.from_numpy(v[first : first + 32].astype("int64")) for k, v in data.eval_inputs.items()}
            losses, _ = net(**batch)
            total, count = total + losses.sum().item(), count + len(losses)
    return total / count


def child(recipe: str, corpus: Path, start: Path, out: Path, steps: int, seed: int, max_grad_norm: float) -> None:
    # Each recipe in its own process: TensorFlow and PyTorch never share one; hide the other framework.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("USE_TF" if recipe == "tf-mlm" else "USE_TORCH", None)
    if recipe != "tf-mlm":
        env["USE_TF"] = "0"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.fidelity",
            "--child",
            recipe,
            "--corpus",
            str(corpus),
            "--start",
            str(start),
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--seeds",
            str(seed),
            "--max-grad-norm",
            str(max_grad_norm),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{recipe} (seed {seed}) failed:\n{done.stderr[-3000:]}")


def write_report(out: Path, report: dict) -> None:
    from mlm_toolkit.metrics import perplexity

    rows = report["rows"]
    lines = [
        f"# Training fidelity: eval perplexity after {report['steps']} steps from the same start, {report['date']}",
        "",
        f"Corpus: {report['corpus']}. Start: {report['start']}. Global batch {BATCH} blocks of {BLOCK} "
        f"tokens, learning rate {LEARNING_RATE}, weight decay 0.01, linear decay, gradient clipping "
        f"{report.get('max_grad_norm', 1.0) or 'off'} (1.0 is every recipe's default), dropout on; training "
        f"seeds {', '.join(map(str, report['seeds']))}. One evaluator (PyTorch, frozen masks of "
        f"{report['eval_blocks']} eval blocks) scores every final model. Device: {report['device']}.",
        "",
        f"Measured at commit {(report.get('commit') or 'unknown')[:8]}"
        f"{'' if report.get('tree_clean', True) else ' with uncommitted changes'}; "
        + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
        + ".",
        "",
        "| recipe | " + " | ".join(f"seed {seed}" for seed in report["seeds"]) + " | mean | vs Trainer, per seed | "
        "vs Trainer, mean of seeds |",
        "|---|" + "---|" * len(report["seeds"]) + "---|---|---|",
    ]
    reference_losses = rows.get("Trainer (guide)", {}).get("eval_losses")
    for name, row in rows.items():
        per_seed = " | ".join(f"{perplexity(loss):.2f}" for loss in row["eval_losses"])
        ratios = [
            perplexity(loss) / perplexity(ref) - 1
            for loss, ref in zip(row["eval_losses"], reference_losses or [], strict=False)  # no reference: none
        ]
        row["ratio_per_seed"] = ratios
        row["ratio_mean"] = statistics.mean(ratios) if ratios else None
        if not ratios:
            vs_seed, vs_mean = "no Trainer row", "-"
        elif name == "Trainer (guide)":
            vs_seed, vs_mean = "reference", "reference"
        else:
            vs_seed, vs_mean = ", ".join(f"{r:+.1%}" for r in ratios), f"**{row['ratio_mean']:+.2%}**"
        lines.append(f"| {name} | {per_seed} | {row['perplexity_mean']:.2f} | {vs_seed} | {vs_mean} |")
    lines += [
        "",
        f"Before training (the shared start): perplexity {report['before_perplexity']:,.1f}.",
        "Each seed draws its own 80/20 split (so its own eval blocks: compare within a column), and each",
        "recipe its own masks and dropout: the per-seed differences show that noise, a few percent either",
        f"way after {report['steps']} steps; the target is the mean over seeds within 2% of the Trainer.",
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(out / "perplexity.png", report)


def plot(path: Path, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlm_toolkit.metrics import perplexity

    names = list(report["rows"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for y, name in enumerate(names):
        values = [perplexity(loss) for loss in report["rows"][name]["eval_losses"]]
        colour = "#888888" if "guide" in name else ("#d9822b" if name.startswith("tf") else "#2b6cd9")
        ax.barh(y, report["rows"][name]["perplexity_mean"], color=colour, alpha=0.6)
        ax.plot(values, [y] * len(values), "ko", markersize=4)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"eval perplexity after {report['steps']} steps (bars: mean; dots: seeds)")
    ax.set_title("Same start, same steps: does each path learn as well as the Trainer?")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="42,43,44", help="training seeds, comma-separated")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default benchmarks/results/fidelity)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/scratch/fidelity"))
    parser.add_argument("--recipes", default=",".join(RECIPES), help="which recipes, comma-separated")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="every recipe's clipping (0: off)")
    parser.add_argument("--child", choices=RECIPES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.child:
        train_one(args.child, args.corpus, args.start, args.out, args.steps, seeds[0], args.max_grad_norm)
        return

    os.environ.setdefault("USE_TF", "0")  # this process evaluates with PyTorch only
    date = datetime.date.today().isoformat()
    out = args.out or Path("benchmarks/results") / "fidelity"
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} already holds a report; choose another --out")
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(args.work / "python-reference.jsonl")
    start = args.work / "start"
    if not (start / "tf_model.h5").is_file():
        write_start(start)
    recipes = [name for name in RECIPES if name in args.recipes.split(",")]
    rows = {name: {"eval_losses": []} for name in recipes}
    for seed in seeds:
        for recipe in recipes:
            folder = args.work / f"{recipe.split()[0].lower()}-seed{seed}"
            child(recipe, corpus, start, folder, args.steps, seed, args.max_grad_norm)
            loss = shared_evaluation(folder, corpus, start, seed)
            rows[recipe]["eval_losses"].append(loss)
            print(f"seed {seed} {recipe}: eval loss {loss:.4f}", flush=True)
    from transformers import AutoTokenizer

    from mlm_toolkit.data import prepare_data
    from mlm_toolkit.metrics import perplexity

    data = prepare_data(
        run_config(corpus, start, start, 1, seeds[0]).data, AutoTokenizer.from_pretrained(start), seeds[0]
    )
    for row in rows.values():
        row["perplexity_mean"] = statistics.mean(perplexity(loss) for loss in row["eval_losses"])
    from benchmarks.run import provenance
    from benchmarks.worker import versions

    out.mkdir(parents=True, exist_ok=True)
    write_report(
        out,
        {
            **provenance(),  # the commit, a clean tree or not, the CPU
            "versions": versions(),
            "date": date,
            "steps": args.steps,
            "seeds": seeds,
            "rows": rows,
            "max_grad_norm": args.max_grad_norm,
            "device": f"CPU, {os.cpu_count()} cores",
            "corpus": f"Python language reference (pydoc_data.topics), {data.texts['rows']} paragraphs, "
            f"{len(data.train_blocks)} train / {data.eval_blocks} eval blocks",
            "start": "built-in MiniLM encoder + a fresh MLM head initialised once (seed 0)",
            "eval_blocks": data.eval_blocks,
            "before_perplexity": perplexity(shared_evaluation(start, corpus, start, seeds[0])),
        },
    )
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
