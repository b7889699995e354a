"""What a run leaves for people: the model card (README.md), the loss curve, and the report files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlm_toolkit.hub import hub_base_model
from mlm_toolkit.metrics import RESULTS, TRAINER_SPLITS, LossLog, Results, write_json
from mlm_toolkit.outputs import write_text_atomically


def plot_loss_curve(path: Path, losses: LossLog, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if losses.steps:
        ax.plot(losses.steps, losses.losses, label="train loss", linewidth=1)
    if losses.evals:
        ax.plot([e["step"] for e in losses.evals], [e["eval_loss"] for e in losses.evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MLM cross-entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def base_model_card(name: str, location: str | None):
    """The base model's own card (its license and language), from its folder or the local Hub cache."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    readme = Path(location) / "README.md" if location and Path(location).is_dir() else None
    if readme is None and hub_base_model(name):
        cached = try_to_load_from_cache(hub_base_model(name), "README.md")
        readme = Path(cached) if isinstance(cached, str) else None
    try:
        return ModelCard.load(readme) if readme and readme.is_file() else None
    except Exception:  # a README that is not a card: nothing to learn from it
        return None


def framework_versions(framework: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    own = ["torch", "accelerate"] if framework == "pytorch" else ["tensorflow", "tf-keras"]
    found = {}
    for package in ["mlm-toolkit", "transformers", *own, "datasets", "tokenizers"]:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def model_card(results: Results, framework: str, base_location: str | None = None) -> str:
    """A Hub model card (README.md): the metadata the Hub indexes (evaluation as model-index results), the
    recipe and figures of this run, the framework versions, and how to use it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = results.config
    data, train, hub = cfg["data"], cfg["train"], cfg.get("hub", {})
    scratch = results.from_scratch
    base = None if scratch else base_model_card(cfg["model"]["model"], base_location)
    name = Path(train["output_dir"]).name
    repo = hub.get("hub_model_id") if hub.get("push_to_hub") else None
    local = data["dataset"].startswith("builtin:") or Path(data["dataset"]).expanduser().exists()
    dataset = None if local else data["dataset"]  # a Hub id
    held_out = results.data.get("held_out", "held out")
    before, after = results.before, results.after
    metrics = [("perplexity", "Perplexity", after.perplexity), ("loss", "Eval loss", after.eval_loss)]
    metrics.append(("accuracy", "Masked-token accuracy", after.accuracy))
    card_data = ModelCardData(
        model_name=repo or name,
        base_model=None if scratch else hub_base_model(cfg["model"]["model"]),
        datasets=[dataset] if dataset else None,
        language=(base.data.language if base else None) or None,
        license=base.data.license if base else None,
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=["masked-lm", results.framework, f"{framework}-mlm"],
        eval_results=[
            EvalResult(
                task_type="fill-mask",
                task_name="Masked language modeling",
                dataset_type=dataset or "local",
                dataset_name=data["dataset"],
                dataset_config=data.get("dataset_config"),
                dataset_split=held_out,
                metric_type=kind,
                metric_name=title,
                metric_value=value if math.isfinite(value) else None,
            )
            for kind, title, value in metrics
        ],
    )
    rows = "\n".join(
        f"| {title} | {_fmt(getattr(before, key))} | {_fmt(getattr(after, key))} |"
        for title, key in (("eval loss", "eval_loss"), ("perplexity", "perplexity"), ("accuracy", "accuracy"))
    )
    versions = "\n".join(f"- {package} {number}" for package, number in framework_versions(results.framework).items())
    where = repo or train["output_dir"]
    body = f"""
# {repo or name}

A masked language model {origin(results)} on `{data["dataset"]}`
(column `{results.data.get("text_column", data.get("text_column"))}`) with `{framework}-mlm train`.

## Evaluation

Perplexity is exp(token-weighted mean cross-entropy) on {results.data["eval_blocks"]} held-out blocks of
{data["block_size"]} tokens ({held_out}), masked once with seed {train["seed"]} so every evaluation sees the
same masks. `{framework}-mlm evaluate` gives the same figure for this folder.

| metric | before | after |
|---|---|---|
{rows}

## Recipe

| setting | value |
|---|---|
| rows (max samples) | {data["max_samples"]} (test share {data["test_size"]}) |
| block size / mlm probability | {data["block_size"]} / {data["mlm_probability"]} |
| line by line / whole-word masking | {data["line_by_line"]} / {data["whole_word_masking"]} |
| learning rate / weight decay | {train["learning_rate"]} / {train["weight_decay"]} |
| schedule / warm-up steps | {train["lr_scheduler"]} / {train["warmup_steps"]} |
| epochs trained / optimizer steps | {results.epochs_trained:g} / {results.optimizer_steps} |
| global batch | {results.global_batch} blocks |
| mean train loss | {_fmt(results.train_loss)} |
| train tokens/s | {_fmt(results.train_tokens_per_second)} on {results.device} |

## Training hyperparameters

{hyperparameters(results, framework)}

## Use

```python
from transformers import pipeline
fill = pipeline("fill-mask", model="{where}")
fill("The Milky Way is a {results.mask_token} galaxy.")
```

## Framework versions

{versions}
"""
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}"))


def origin(results: Results) -> str:
    """Where the weights started: from scratch, or the base model (and the weights it lacked)."""
    if results.from_scratch:
        return f"trained from scratch (`{results.model}`: every weight initialised from the seed)"
    fresh = results.fresh_weights
    lacked = f", whose checkpoint lacked {len(fresh)} weights initialised from the seed ({', '.join(fresh[:6])})"
    return f"fine-tuned from `{results.model}`" + (lacked if fresh else "")


def hyperparameters(results: Results, framework: str) -> str:
    """The settings a run was trained with, named as the Trainer's model cards name them."""
    train, own = results.config["train"], results.config.get(framework, {})
    accumulation = own.get("gradient_accumulation_steps") or 1
    steps = f"{results.optimizer_steps} optimizer steps ({results.epochs_trained:g} epochs)"
    clipping = train["max_grad_norm"] or "none"
    settings = {
        "learning_rate": train["learning_rate"],
        "train_batch_size": train["per_device_batch_size"],
        "eval_batch_size": train.get("eval_batch_size") or train["per_device_batch_size"],
        "seed": train["seed"],
        "distributed_type": f"{results.num_processes} processes" if results.num_processes > 1 else "no",
        "gradient_accumulation_steps": accumulation,
        "total_train_batch_size": results.global_batch,
        "optimizer": f"AdamW with betas=(0.9,0.999), epsilon=1e-08 and weight decay {train['weight_decay']}",
        "lr_scheduler_type": train["lr_scheduler"],
        "lr_scheduler_warmup": f"{train['warmup_steps']} steps" if train["warmup_steps"] else train["warmup_ratio"],
        "max_grad_norm": clipping,
        "training_steps": steps,
        "mixed_precision_training": results.precision,
    }
    return "\n".join(f"- {name}: {value}" for name, value in settings.items())


def write_run_report(out: Path, results: Results, framework: str, base_location: str | None = None) -> None:
    """Model card, loss curve, the Trainer's {train,eval}_results.json, then all_results.json (run complete)."""
    write_text_atomically(out / "README.md", model_card(results, framework, base_location))
    plot_loss_curve(out / "loss_curve.png", LossLog.from_dict(results.loss_log), f"{framework}-mlm: {results.model}")
    figures = results.to_dict()
    for split, keys in TRAINER_SPLITS.items():
        write_json(out / f"{split}_results.json", {key: figures[key] for key in keys})
    write_json(out / RESULTS, figures)
