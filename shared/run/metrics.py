"""Perplexity done honestly: a token-weighted mean loss, and exp() that overflows to inf, not a crash."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy); inf when that overflows a float, nan stays nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class EvalScore(NamedTuple):
    """One evaluation: the token-weighted mean loss, and the share of masked tokens whose most likely token
    is the right one (run_mlm.py's eval_accuracy)."""

    loss: float
    accuracy: float


@dataclass
class TokenWeightedMean:
    """Mean loss over masked tokens across batches of different masked-token counts.

    Averaging per-batch means would over-weight batches with few masked tokens; summing
    loss x tokens and dividing by total tokens is the mean over every masked token.
    """

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
    grad_norms: list[float] = field(
        default_factory=list
    )  # global norm before clipping, as the Trainer logs it

    def log_step(
        self, step: int, loss: float, seconds: float = float("nan"), grad_norm: float = float("nan")
    ) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.step_seconds.append(float(seconds))
        self.grad_norms.append(float(grad_norm))

    def log_eval(self, step: int, eval_loss: float, accuracy: float = math.nan) -> dict[str, float]:
        record = {
            "step": int(step),
            "eval_loss": float(eval_loss),
            "perplexity": perplexity(eval_loss),
            "accuracy": float(accuracy),
        }
        self.evals.append(record)
        return record

    def to_dict(self) -> dict[str, list]:
        return {
            "steps": self.steps,
            "losses": self.losses,
            "evals": self.evals,
            "step_seconds": self.step_seconds,
            "grad_norms": self.grad_norms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> "LossLog":
        return cls(
            *(list(d.get(key, [])) for key in ("steps", "losses", "evals", "step_seconds", "grad_norms"))
        )
