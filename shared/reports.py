"""What a finished run leaves beside its weights: metrics JSON, a model card, and a loss curve."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mlm_toolkit.metrics import LossLog
from mlm_toolkit.outputs import write_text_atomically
from mlm_toolkit.results import RESULTS, Results


def _jsonable(value: Any) -> Any:
    # JSON has no inf/nan; strings keep an overflowed perplexity honest instead of crashing.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomically(path, json.dumps(_jsonable(payload), indent=2, sort_keys=True) + "\n")


def plot_loss_curve(path: Path, losses: LossLog, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if losses.steps:
        ax.plot(losses.steps, losses.losses, label="train loss", linewidth=1)
    if losses.evals:
        ax.plot(
            [e["step"] for e in losses.evals], [e["eval_loss"] for e in losses.evals], "o-", label="eval loss"
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MLM cross-entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def hub_base_model(name: str) -> str | None:
    """The Hub id a model card names as base model: none for a local folder, the built-in's origin."""
    from mlm_toolkit.config import BUILTIN_MODEL, BUILTIN_MODEL_ORIGIN

    if name == BUILTIN_MODEL:
        return BUILTIN_MODEL_ORIGIN
    return None if Path(name).expanduser().exists() else name


def _base_model_line(name: str) -> str:
    base = hub_base_model(name)
    return f"base_model: {base}\n" if base else ""


def model_card(results: Results, framework: str) -> str:
    """A Hub model card (README.md) with the recipe and the figures of this run."""
    cfg = results.config
    data, train = cfg["data"], cfg["train"]
    before, after = results.before, results.after
    rows = "\n".join(
        f"| {name} | {_fmt(getattr(before, key))} | {_fmt(getattr(after, key))} |"
        for name, key in (("eval loss", "eval_loss"), ("perplexity", "perplexity"))
    )
    return f"""---
library_name: transformers
pipeline_tag: fill-mask
tags: [masked-lm, {results.framework}]
{_base_model_line(cfg["model"]["model"])}---

# {Path(train["output_dir"]).name}

A masked language model fine-tuned from `{cfg["model"]["model"]}` on `{data["dataset"]}`
(column `{data["text_column"]}`) with `{framework}-mlm train`.

## Evaluation

Perplexity is exp(token-weighted mean cross-entropy) on {results.data["eval_blocks"]} held-out blocks of
{data["block_size"]} tokens, masked once with seed {train["seed"]} so every evaluation sees the same masks.

| metric | before | after |
|---|---|---|
{rows}

## Recipe

| setting | value |
|---|---|
| rows (max samples) | {data["max_samples"]} (test share {data["test_size"]}) |
| block size / mlm probability | {data["block_size"]} / {data["mlm_probability"]} |
| learning rate / weight decay | {train["learning_rate"]} / {train["weight_decay"]} |
| epochs trained / optimizer steps | {results.epochs_trained:g} / {results.optimizer_steps} |
| global batch | {results.global_batch} blocks |
| precision | {results.precision} |
| train tokens/s | {_fmt(results.train_tokens_per_second)} on {results.device} |

## Use

```python
from transformers import pipeline
fill = pipeline("fill-mask", model="{train["output_dir"]}")
fill("The Milky Way is a {results.mask_token} galaxy.")
```
"""


def write_run_report(out: Path, results: Results, framework: str) -> None:
    """all_results.json, README.md (model card) and loss_curve.png into the output folder."""
    write_json(out / RESULTS, results.to_dict())
    (out / "README.md").write_text(model_card(results, framework))
    plot_loss_curve(
        out / "loss_curve.png", LossLog.from_dict(results.loss_log), f"{framework}-mlm: {results.model}"
    )
