"""Framework-neutral half of mask filling; `pt_mlm.MaskFiller` and `tf_mlm.MaskFiller` supply `_top_k`."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Sequence

import numpy as np

from mlm_toolkit.errors import RunError, UsageError, WrongType

log = logging.getLogger(__name__)

# Users write the mask the way their model family spells it; accept both for any model.
_MASK_SPELLINGS = re.compile(r"<mask>|\[MASK\]")

Prediction = dict[str, Any]


def check_strings(value: Any, argument: str) -> None:
    if not isinstance(value, str) and not (
        isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    ):
        raise WrongType(f"must be a str or a list of str, got {value!r}", argument)


class MaskFillerBase:
    """Fill `<mask>` or `[MASK]` in one text or a batch; returns what the fill-mask pipeline returns (a list of
    predictions per mask, one list per text)."""

    def __init__(self, tokenizer, max_length: int = 512) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def _top_k(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, k: int, candidates: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, token ids), each (masks in the batch, k), in row-major mask order; with `candidates`,
        the k most likely of those only."""
        raise NotImplementedError

    def normalise(self, text: str) -> str:
        normalised = _MASK_SPELLINGS.sub(self.tokenizer.mask_token, text)
        if self.tokenizer.mask_token not in normalised:
            raise UsageError(f"no mask in {text!r}; write <mask> or [MASK] where a word is missing", "texts")
        return normalised

    def target_ids(self, targets: str | Sequence[str]) -> np.ndarray:
        """The pipeline's `targets`: each a vocabulary entry, else its first token (with a warning)."""
        vocab, ids = self.tokenizer.get_vocab(), []
        for target in [targets] if isinstance(targets, str) else targets:
            token = vocab.get(target)
            if token is None:
                pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
                if not pieces:
                    log.warning("target %r has no token in the model's vocabulary; left out", target)
                    continue
                token = pieces[0]
                first = self.tokenizer.convert_ids_to_tokens(token)
                log.warning("target %r is not one token; using its first, %r", target, first)
            ids.append(token)
        if not ids:
            raise UsageError(f"none of {targets!r} is in the model's vocabulary", "targets")
        return np.array(sorted(set(ids)))

    def __call__(self, texts: str | Sequence[str], top_k: int = 5, targets: str | Sequence[str] | None = None) -> list:
        """`targets`, as the fill-mask pipeline's: rank only these words (top_k at most their number)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise WrongType(f"must be an int, got {top_k!r}", "top_k")
        check_strings(texts, "texts")
        if targets is not None:
            check_strings(targets, "targets")
        if top_k < 1:
            raise UsageError(f"must be at least 1, got {top_k}", "top_k")
        single = isinstance(texts, str)
        batch = [self.normalise(t) for t in ([texts] if single else texts)]
        if not batch:
            raise UsageError("no texts given", "texts")
        candidates = None if targets is None else self.target_ids(targets)
        rows = [self._fit(self.tokenizer(text)["input_ids"], n) for n, text in enumerate(batch)]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = np.array([row + [pad] * (width - len(row)) for row in rows], dtype=np.int64)
        attention = np.array([[1] * len(row) + [0] * (width - len(row)) for row in rows], dtype=np.int64)
        choices = len(self.tokenizer) if candidates is None else len(candidates)
        probs, tokens = self._top_k(ids, attention, min(top_k, choices), candidates)
        if not np.isfinite(probs).all():
            raise RunError("the model's predictions are not finite: its weights are not (a diverged training run?)")
        rows, cols = np.nonzero(ids == self.tokenizer.mask_token_id)
        results: list[list[list[Prediction]]] = [[] for _ in batch]
        for n, (row, col) in enumerate(zip(rows, cols, strict=True)):
            results[row].append(
                [self._prediction(ids[row], col, int(t), float(p)) for p, t in zip(probs[n], tokens[n], strict=True)]
            )
        shaped = [per_text[0] if len(per_text) == 1 else per_text for per_text in results]
        return shaped[0] if single else shaped

    def _fit(self, ids: list[int], n: int) -> list[int]:
        """A text's token ids within the model's positions: a longer one keeps the window around its masks."""
        if len(ids) <= self.max_length:
            return ids
        masks = [i for i, token in enumerate(ids) if token == self.tokenizer.mask_token_id]
        inner = self.max_length - 2
        if masks[-1] - masks[0] + 1 > inner:
            apart = f"masks {masks[-1] - masks[0] + 1} tokens apart, more than the model's {self.max_length} positions"
            raise UsageError(f"text {n + 1} has {apart} hold; split it into shorter texts", "texts")
        start = min(max(1, masks[0] - (inner - (masks[-1] - masks[0] + 1)) // 2), len(ids) - 1 - inner)
        message = "text %d has %d tokens, more than the model's %d positions: kept the %d around its masks"
        log.warning(message, n + 1, len(ids), self.max_length, inner)
        return [ids[0], *ids[start : start + inner], ids[-1]]

    def _prediction(self, ids: np.ndarray, position: int, token: int, score: float) -> Prediction:
        filled = ids.copy()
        filled[position] = token
        keep = filled != self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else slice(None)
        return {
            "score": score,
            "token": token,
            "token_str": self.tokenizer.decode([token]).strip(),
            "sequence": self.tokenizer.decode(filled[keep], skip_special_tokens=True),
        }


def _per_mask(predictions: list) -> list[list[Prediction]]:
    return predictions if predictions and isinstance(predictions[0], list) else [predictions]


def predictions_as_json(results: list[tuple[str, list]]) -> str:
    """One JSON array for any number of texts: [{"text": ..., "masks": [[prediction, ...] per mask]}]."""
    return json.dumps([{"text": text, "masks": _per_mask(predictions)} for text, predictions in results], indent=2)


def format_predictions(text: str, predictions: list) -> str:
    """A readable table of one text's predictions, for `*-mlm fill-mask`."""
    per_mask = _per_mask(predictions)
    lines = [text]
    for n, preds in enumerate(per_mask, 1):
        if len(per_mask) > 1:
            lines.append(f"mask {n}:")
        lines.append(f"  {'rank':>4}  {'token':<16} {'score':>7}  sequence")
        for rank, p in enumerate(preds, 1):
            lines.append(f"  {rank:>4}  {p['token_str']:<16} {p['score']:>7.4f}  {p['sequence']}")
    return "\n".join(lines)
