"""The results contract: what a finished run reports, in one typed shape for both frameworks.

Training builds it, `all_results.json` stores it (`to_dict`), the model card, the CLI summary, the
benchmarks and the tests read it; a finished run's JSON reads back into it (`load`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlm_toolkit.run.metrics import LossLog, perplexity

RESULTS = "all_results.json"
# The Trainer's `save_metrics("train" | "eval", ...)` files: these keys of all_results.json.
TRAINER_SPLITS = {
    "train": (
        "train_loss",
        "train_runtime",
        "train_samples",
        "train_samples_per_second",
        "train_steps_per_second",
        "epoch",
    ),
    "eval": ("eval_loss", "perplexity", "eval_accuracy", "eval_samples", "epoch"),
}


@dataclass
class Evaluation:
    eval_loss: float
    perplexity: float
    accuracy: float = math.nan  # of the masked tokens (argmax); nan in results written before it existed

    @classmethod
    def of(cls, record: dict[str, float]) -> "Evaluation":
        """From a loss log's evaluation record."""
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
        """Our figures, and the Trainer's flat keys beside them, so scripts written for
        `trainer.evaluate()` and `all_results.json` of run_mlm.py read this file as they are."""
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
            key: Evaluation(
                *(float(saved[key].get(f, "nan")) for f in ("eval_loss", "perplexity", "accuracy"))
            )
            for key in ("before", "after")
        }  # an overflowed perplexity is stored as "inf"
        return cls(**{**{k: v for k, v in saved.items() if k in names}, **evaluations})


def completed_results(out: Path) -> Results | None:
    """The results of a finished run in `out` (all_results.json is written last), or None."""
    path = out / RESULTS
    return Results.load(path) if path.is_file() else None
