"""What a run measured: the eval score, the loss log and `Results`, one shape for both frameworks, which
`all_results.json` stores (written last: a folder holding it is a finished run).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mlm_toolkit.outputs import RESULTS, write_text_atomically


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
    from_scratch: bool = False  # every weight fresh from the seed (--model-type, --config-name)

    @classmethod
    def of_run(cls, losses: LossLog, **figures: Any) -> "Results":
        """Results from the loss log and the framework's own figures."""
        seconds = figures["train_seconds"]
        return cls(
            before=Evaluation.of(losses.evals[0]),
            after=Evaluation.of(losses.evals[-1]),
            train_loss=sum(losses.losses) / len(losses.losses) if losses.losses else math.nan,
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
            "eval_perplexity": self.after.perplexity,  # the TF run_mlm.py's name (its tests read it)
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
