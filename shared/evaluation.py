"""`*-mlm evaluate MODEL`: the perplexity of a saved model on the held-out blocks, with the frozen masks a
training run with the same data settings and seed evaluates on; each framework supplies `score`.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from mlm_toolkit.config import EvalConfig
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.metrics import EvalScore, perplexity

log = logging.getLogger("mlm")


@dataclass
class ModelEvaluation:
    """What `*-mlm evaluate` measured of a saved model, and on what."""

    model: str
    framework: str
    dataset: str
    held_out: str
    eval_blocks: int
    eval_masked_tokens: int
    eval_loss: float
    perplexity: float
    accuracy: float  # of the masked tokens, argmax against the label (run_mlm.py's eval_accuracy)
    config: dict[str, Any]


def evaluate(config: EvalConfig, framework: str, score: Callable[..., EvalScore]) -> ModelEvaluation:
    """Resolve the model, prepare the held-out blocks alone, and score them with the framework."""
    from mlm_toolkit.data import prepare_data
    from mlm_toolkit.models import load_checked, resolve_model

    resolved = resolve_model(config.model.model)
    _, tokenizer = load_checked(resolved, config.data.block_size)
    seed = config.settings.seed
    data = prepare_data(config.data, tokenizer, seed, train=False)
    loss, accuracy = score(resolved, tokenizer, data, config.settings.eval_batch_size)
    if not math.isfinite(loss):
        raise RunError(f"{config.model.model}: the eval loss is {loss}: its weights are not finite (a diverged run?)")
    summary = data.summary()
    result = ModelEvaluation(
        model=config.model.model,
        framework=framework,
        dataset=config.data.dataset,
        held_out=summary["held_out"],
        eval_blocks=data.eval_blocks,
        eval_masked_tokens=summary["eval_masked_tokens"],
        eval_loss=loss,
        perplexity=perplexity(loss),
        accuracy=accuracy,
        config={"data": asdict(config.data), "settings": asdict(config.settings)},
    )
    figures = (config.model.model, loss, result.perplexity, accuracy)
    log.info("%s: eval loss %.4f, perplexity %.2f, accuracy %.4f", *figures)
    return result


def check_writable_file(path: Path, overwrite: bool) -> None:
    """Refuse an --output-file that exists (unless --overwrite) or whose folder cannot be written."""
    if path.exists() and not overwrite:
        raise UsageError(f"{str(path)!r} exists; pass --overwrite to replace it", "--output-file")
    folder = path.expanduser().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # write_evaluation creates the rest
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder")
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"cannot write {str(path)!r}: {error.strerror or error}", "--output-file") from None


def write_evaluation(path: Path, result: ModelEvaluation, overwrite: bool) -> None:
    from mlm_toolkit.metrics import write_json

    if path.exists() and not overwrite:
        raise UsageError(f"{str(path)!r} exists; pass --overwrite to replace it", "--output-file")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, asdict(result))


def evaluation_json(result: ModelEvaluation) -> str:
    from mlm_toolkit.metrics import _jsonable

    return json.dumps(_jsonable(asdict(result)), indent=2)
