"""What defines a run, so that `--resume` continues the same run or refuses with the setting that differs.

A checkpoint (PyTorch) or a Keras backup records the run's identity when it is written; a resumed run
computes its own and compares. The data is identified by a fingerprint of its texts, not by its name:
the same file edited in place is other data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlm_toolkit.config import RunConfig, flag_of
from mlm_toolkit.errors import UsageError

# Settings that decide what the model learns or how it is measured, by their config field (and so their
# flag); a change of the data itself is caught by the fingerprint of the texts.
DATA_FIELDS = (
    "dataset_config",
    "train_split",
    "max_samples",
    "test_size",
    "max_eval_samples",
    "block_size",
    "line_by_line",
    "mlm_probability",
    "whole_word_masking",
    "streaming",
)
TRAIN_FIELDS = (
    "seed",
    "per_device_batch_size",
    "learning_rate",
    "weight_decay",
    "lr_scheduler",
    "warmup_steps",
    "warmup_ratio",
    "max_grad_norm",
)


def model_shape(config) -> str:
    """What a checkpoint's tensors depend on: family, vocabulary, width and depth of the model."""
    return (
        f"{config.model_type}, vocabulary {config.vocab_size}, hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers"
    )


def run_identity(
    run: RunConfig, model_name: str, model_config, data, num_processes: int, options: Any = None
) -> dict[str, Any]:
    """The settings a resumed run must share (`data`: the run's `MLMData` or `StreamData`); `options` adds
    the framework's `identity_fields`."""
    identity: dict[str, Any] = {
        "model": model_name,
        "model_shape": model_shape(model_config),
        "num_processes": num_processes,
        "text_column": data.text_column,
    }
    identity.update({name: getattr(run.data, name) for name in DATA_FIELDS})
    identity.update({name: getattr(run.train, name) for name in TRAIN_FIELDS})
    identity.update({name: getattr(options, name) for name in getattr(options, "identity_fields", ())})
    # Last, so that a setting that changes the data (the seed's split, --max-samples) is named itself.
    identity["dataset"] = data.fingerprint
    return identity


def check_same_run(saved: dict[str, Any], now: dict[str, Any], where: str) -> None:
    """Refuse to resume `where` (a checkpoint or backup) when any setting defining the run differs."""
    for key, value in now.items():
        if key not in saved or saved[key] == value:
            continue
        if key == "dataset":
            raise UsageError(
                f"{where} was trained on other data (fingerprint {saved[key]}, now {value}); "
                "resume with the same data or start a new --output-dir",
                "--dataset",
            )
        flag = {"num_processes": "--resume", "model_shape": "--model"}.get(key) or flag_of(key)
        raise UsageError(
            f"{where} was made with {flag} {saved[key]}, this run has {value}; "
            "resume with the same settings or start a new --output-dir",
            flag,
        )


def check_finished_run(saved: dict[str, Any], run: RunConfig, options: Any, where: str) -> None:
    """Refuse `--resume` on a finished run (`saved`: its all_results.json config) with settings that differ:
    its figures are not this run's. More --max-steps is not a resume of a finished run either: say how."""
    now = {**run.to_dict(), "options": dataclasses.asdict(options) if options is not None else {}}
    saved = {**saved, "options": saved.get("pt") or saved.get("tf") or {}}
    fields = [("data", n) for n in (*DATA_FIELDS, "dataset", "text_column")] + [("model", "model")]
    fields += [("train", n) for n in (*TRAIN_FIELDS, "max_steps", "num_epochs")]
    fields += [("options", n) for n in getattr(options, "identity_fields", ())]
    for part, name in fields:
        before, after = saved.get(part, {}).get(name), now[part].get(name)
        if name not in saved.get(part, {}) or after is None or before == after:
            continue
        if name in ("max_steps", "num_epochs"):
            raise UsageError(
                f"{where} is a finished run ({flag_of(name)} {before}); it is not trained further: start a "
                f"new run from its model, --model {run.train.output_dir} with another --output-dir",
                flag_of(name),
            )
        raise UsageError(
            f"{where} is a finished run made with {flag_of(name)} {before}, this run has {after}; "
            "start a new --output-dir, or --overwrite-output-dir to replace it",
            flag_of(name),
        )


def check_steps_left(max_steps: int | None, steps_done: int, where: str) -> None:
    """Refuse a --max-steps below the steps done. Equal is allowed: a run stopped after its last step
    (its final save failed) finishes with no step more."""
    if max_steps is not None and max_steps < steps_done:
        raise UsageError(
            f"{where} is at step {steps_done} already; give a larger value to train on", "--max-steps"
        )
