"""What a run measured and leaves for people: results, metrics JSON, model card, loss curve, Hub pushes,
and weights for the other framework. `Results` is one shape for both frameworks: `all_results.json` stores it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

from mlm_toolkit.config import HubConfig, RunError
from mlm_toolkit.outputs import write_text_atomically
from mlm_toolkit.sources import hub_offline_reason


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy); inf when that overflows a float, nan stays nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class EvalScore(NamedTuple):
    """The token-weighted mean loss, and the share of masked tokens predicted right (run_mlm.py's accuracy)."""

    loss: float
    accuracy: float


@dataclass
class TokenWeightedMean:
    """The mean over every masked token of batches with different counts (a mean of batch means is not)."""

    total: float = 0.0
    tokens: int = 0
    correct: int = 0

    def add(self, mean_loss: float, tokens: int, correct: int = 0) -> None:
        self.total += float(mean_loss) * int(tokens)
        self.tokens += int(tokens)
        self.correct += int(correct)

    @property
    def mean(self) -> float:
        return self.total / self.tokens if self.tokens else math.nan

    @property
    def score(self) -> EvalScore:
        return EvalScore(self.mean, self.correct / self.tokens if self.tokens else math.nan)


@dataclass
class LossLog:
    """Per-step training loss and per-evaluation figures, for the report and the curve."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimizer step
    grad_norms: list[float] = field(default_factory=list)  # global norm before clipping, as the Trainer logs it

    def log_step(self, step: int, loss: float, seconds: float = float("nan"), grad_norm: float = float("nan")) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.step_seconds.append(float(seconds))
        self.grad_norms.append(float(grad_norm))

    def log_eval(self, step: int, eval_loss: float, accuracy: float = math.nan) -> dict[str, float]:
        record = {"step": int(step), "eval_loss": float(eval_loss), "accuracy": float(accuracy)}
        record["perplexity"] = perplexity(eval_loss)
        self.evals.append(record)
        return record

    def to_dict(self) -> dict[str, list]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> "LossLog":
        return cls(**{f.name: list(d.get(f.name, [])) for f in dataclasses.fields(cls)})


RESULTS = "all_results.json"
# The Trainer's `save_metrics("train" | "eval", ...)` files: these keys of all_results.json.
TRAINER_SPLITS = {
    "train": "train_loss train_runtime train_samples train_samples_per_second train_steps_per_second epoch".split(),
    "eval": "eval_loss perplexity eval_accuracy eval_samples epoch".split(),
}


@dataclass
class Evaluation:
    eval_loss: float
    perplexity: float
    accuracy: float = math.nan  # of the masked tokens (argmax); nan in results written before it existed

    @classmethod
    def of(cls, record: dict[str, float]) -> "Evaluation":  # a loss log's evaluation record
        loss = record["eval_loss"]
        return cls(loss, perplexity(loss), record.get("accuracy", math.nan))


@dataclass
class Results:
    framework: str  # "pytorch" or "tensorflow"
    config: dict[str, Any]  # the run's RunConfig and the framework's options, as given
    data: dict[str, Any]  # rows, blocks and tokens of each split
    model: str
    mask_token: str
    fresh_weights: list[str]  # weights the checkpoint lacked (a new MLM head), initialised from the seed
    before: Evaluation
    after: Evaluation
    train_loss: float  # the mean of every optimizer step's loss, as the Trainer reports it
    loss_log: dict[str, list]
    optimizer_steps: int
    steps_per_epoch: int
    global_batch: int
    precision: str
    device: str
    num_processes: int
    train_tokens: int
    train_seconds: float
    epochs_trained: float
    train_tokens_per_second: float | None  # None, never nan or inf, when no training time was measured
    data_wait_seconds: float | None = None  # time the loop waited for batches, where the loop measures it
    last_train_loss: float = math.nan  # the last optimizer step's loss

    @classmethod
    def of_run(cls, losses: LossLog, **figures: Any) -> "Results":
        """Results from the loss log and the framework's own figures."""
        seconds = figures["train_seconds"]
        return cls(
            before=Evaluation.of(losses.evals[0]),
            after=Evaluation.of(losses.evals[-1]),
            train_loss=sum(losses.losses) / len(losses.losses) if losses.losses else math.nan,
            last_train_loss=losses.losses[-1] if losses.losses else math.nan,
            loss_log=losses.to_dict(),
            epochs_trained=round(figures["optimizer_steps"] / figures["steps_per_epoch"], 2),
            train_tokens_per_second=figures["train_tokens"] / seconds if seconds > 0 else None,
            **figures,
        )

    def to_dict(self) -> dict[str, Any]:
        """Our figures and the Trainer's flat keys, so scripts written for run_mlm.py's files read this one."""
        return {**dataclasses.asdict(self), **self.trainer_keys()}

    def trainer_keys(self) -> dict[str, Any]:
        seconds = self.train_seconds
        blocks = self.optimizer_steps * self.global_batch
        return {
            "eval_loss": self.after.eval_loss,
            "perplexity": self.after.perplexity,
            "eval_accuracy": self.after.accuracy,
            "eval_samples": self.data.get("eval_blocks"),
            "train_runtime": seconds,
            "train_samples": self.data.get("train_blocks"),
            "train_samples_per_second": blocks / seconds if seconds > 0 else None,
            "train_steps_per_second": self.optimizer_steps / seconds if seconds > 0 else None,
            "epoch": self.epochs_trained,
        }

    @classmethod
    def load(cls, path: Path) -> "Results":
        saved = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(cls)}  # the Trainer's flat keys are derived, not read
        evaluations = {
            key: Evaluation(*(float(saved[key].get(f, "nan")) for f in ("eval_loss", "perplexity", "accuracy")))
            for key in ("before", "after")
        }  # an overflowed perplexity is stored as "inf"
        return cls(**{**{k: v for k, v in saved.items() if k in names}, **evaluations})


def completed_results(out: Path) -> Results | None:
    """The results of a finished run in `out` (all_results.json is written last), or None."""
    path = out / RESULTS
    return Results.load(path) if path.is_file() else None


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


def hub_base_model(name: str) -> str | None:
    """The Hub id a model card names as base model: none for a local folder, the built-in's origin."""
    from mlm_toolkit.config import BUILTIN_MODEL, BUILTIN_MODEL_ORIGIN

    return BUILTIN_MODEL_ORIGIN if name == BUILTIN_MODEL else None if Path(name).expanduser().exists() else name


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
    base = base_model_card(cfg["model"]["model"], base_location)
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
        base_model=hub_base_model(cfg["model"]["model"]),
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

A masked language model fine-tuned from `{cfg["model"]["model"]}` on `{data["dataset"]}`
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
| precision | {results.precision} |
| train tokens/s | {_fmt(results.train_tokens_per_second)} on {results.device} |

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


def write_run_report(out: Path, results: Results, framework: str, base_location: str | None = None) -> None:
    """Model card, loss curve, the Trainer's {train,eval}_results.json, then all_results.json (run complete)."""
    write_text_atomically(out / "README.md", model_card(results, framework, base_location))
    plot_loss_curve(out / "loss_curve.png", LossLog.from_dict(results.loss_log), f"{framework}-mlm: {results.model}")
    figures = results.to_dict()
    for split, keys in TRAINER_SPLITS.items():
        write_json(out / f"{split}_results.json", {key: figures[key] for key in keys})
    write_json(out / RESULTS, figures)


# Checkpoints, logs and the Keras callback's clone of the repository (hub/) stay local; the Hub gets
# the model, tokenizer, card, metrics and curve.
NOT_PUSHED = ["checkpoint-*", "runs/*", ".tmp-*", "backup/*", "backup-previous/*", "hub/*", "hub-push/*", ".lock"]


def check_push_possible(hub: HubConfig) -> None:
    """Fail before training, not after hours of it, when a push at the end could not work."""
    from huggingface_hub import get_token

    reason = hub_offline_reason()
    if reason:
        raise RunError(f"--push-to-hub: {reason}; train without --push-to-hub and upload the folder later")
    if not (hub.hub_token or get_token()):
        raise RunError("--push-to-hub: no Hugging Face token; pass --hub-token, run `hf auth login` or set HF_TOKEN")


class Pushes:
    """A run's pushes: with every_save, each save's model in the background, in order; the folder at the end."""

    STAGING = "hub-push"  # inside --output-dir: the model of the latest save, as it is being uploaded

    def __init__(self, hub: HubConfig) -> None:
        from huggingface_hub import HfApi

        self.hub, self.api, self.pending = hub, HfApi(token=hub.hub_token), None
        self.api.create_repo(hub.hub_model_id, private=hub.hub_private, exist_ok=True)

    def push_save(self, out: Path, save: Callable[[Path], None], message: str) -> None:
        """Write the model with `save(folder)` and upload it without waiting (every_save only)."""
        if self.hub.hub_strategy != "every_save":
            return
        self.wait()
        folder = out / self.STAGING
        shutil.rmtree(folder, ignore_errors=True)
        save(folder)
        self.pending = self.api.upload_folder(
            repo_id=self.hub.hub_model_id, folder_path=str(folder), commit_message=message, run_as_future=True
        )

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()  # a failed background push fails the run here, with its own error
            self.pending = None

    def push_folder(self, folder: Path, message: str) -> str:
        """Upload the finished folder (after the last background push); returns the commit URL."""
        self.wait()
        shutil.rmtree(folder / self.STAGING, ignore_errors=True)
        commit = self.api.upload_folder(
            repo_id=self.hub.hub_model_id, folder_path=str(folder), commit_message=message, ignore_patterns=NOT_PUSHED
        )
        return str(getattr(commit, "commit_url", commit))


log = logging.getLogger(__name__)

PT_WEIGHTS, TF_WEIGHTS, SAFETENSORS = "pytorch_model.bin", "tf_model.h5", "model.safetensors"

_TO_TF = """
import sys
from transformers import TFAutoModelForMaskedLM
TFAutoModelForMaskedLM.from_pretrained(sys.argv[1], from_pt=True).save_pretrained(sys.argv[1])
"""

_TO_PT = """
import sys
import numpy as np, torch
from transformers import AutoConfig, AutoModelForMaskedLM, TFAutoModelForMaskedLM
from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model
# Built from config and filled from the Keras model: from_pretrained(from_tf=True) leaves meta tensors.
model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(sys.argv[1]))
keras_model = TFAutoModelForMaskedLM.from_pretrained(sys.argv[1])
load_tf2_model_in_pytorch_model(model, keras_model)
# Some families tie weights in PyTorch that their TF classes train apart (ALBERT's two biases): such a
# conversion loads and predicts otherwise, so it is checked, never written silently wrong.
ids = np.arange(3, 19)[None] % model.config.vocab_size
with torch.no_grad():
    gap = np.abs(model.eval()(input_ids=torch.from_numpy(ids)).logits.numpy() - keras_model(ids).logits.numpy()).max()
if not gap <= 1e-3:
    sys.exit(f"the PyTorch {model.config.model_type} model would predict otherwise (logits {gap:.3g} apart)")
model.save_pretrained(sys.argv[1], safe_serialization=False)
"""


def add_weights_for_other_framework(folder: Path, have: str) -> bool:
    """Write TensorFlow weights beside PyTorch ones (`have="pt"`) or the reverse; False when it cannot."""
    # "AUTO" for both: a "1" for one framework switches the other off in transformers. No GPU: the
    # conversion is small, and the training process may hold the GPU's memory.
    env = {**os.environ, "USE_TF": "AUTO", "USE_TORCH": "AUTO", "CUDA_VISIBLE_DEVICES": ""}
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    code = _TO_TF if have == "pt" else _TO_PT
    weights, other = (TF_WEIGHTS, "TensorFlow") if have == "pt" else (PT_WEIGHTS, "PyTorch")
    log.info("converting the weights to %s (%s) in a %s process", weights, other, other)
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("could not add %s weights: %s", other, (done.stderr.strip().splitlines() or ["?"])[-1])
        return False
    return True
