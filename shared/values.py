"""What a config value may be: its type, its choices, the numbers the frameworks can hold, and the lists
(--report-to, --checkpointing-steps) a flag and a field both take."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from mlm_toolkit.errors import UsageError, WrongType


def flag_of(name: str) -> str:
    """The CLI flag that sets the config field `name`."""
    return "--" + name.replace("_", "-")


TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")  # --report-to; each the name of its package
INT_LIMIT = 2**31  # beyond this, counts and seeds overflow the frameworks' int32 and NumPy's seeding
EPOCH_LIMIT = 1e6


def choices_of(annotation: Any) -> tuple[str, ...] | None:
    """The values of a `Literal[...]` (or `Literal[...] | None`) field: what click and validation both read."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not Literal and len(args) == 1:
        annotation = args[0]
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def accepts(annotation: Any, value: Any) -> bool:
    """Whether `value` is of the field type `annotation` (an int is a float; a bool is neither)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return isinstance(value, str)  # which of the values: checked below, with the list
    if origin in (typing.Union, types.UnionType):
        return any(accepts(arg, value) for arg in args)
    if origin is tuple:
        return isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value)
    if annotation is type(None):
        return value is None
    if annotation in (int, float):
        numbers = (int, float) if annotation is float else int
        return isinstance(value, numbers) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def describe(annotation: Any) -> str:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else [annotation]
    return " or ".join("None" if a is type(None) else getattr(a, "__name__", str(a)) for a in kinds)


def check_numbers(config: Any) -> None:
    """Every field holds a value of its type (one of its values, for a `Literal`), finite and within int32."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not accepts(hints[f.name], value):
            wrong = f"{type(config).__name__}({f.name}=...) must be {describe(hints[f.name])}, got {value!r}"
            raise WrongType(wrong, flag_of(f.name))
        choices = choices_of(hints[f.name])
        optional = type(None) in typing.get_args(hints[f.name])
        if choices and value not in choices and not (value is None and optional):
            raise UsageError(f"must be one of {', '.join(choices)}, got {value!r}", flag_of(f.name))
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"must be a finite number, got {value}", flag_of(f.name))
        if isinstance(value, int) and not -INT_LIMIT < value < INT_LIMIT:
            raise UsageError(f"must be below {INT_LIMIT:,} in size, got {value}", flag_of(f.name))


def check_positive(config: Any, *names: str, allow_none: bool = False, or_zero: bool = False) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None and allow_none:
            continue
        if value is None or value < 0 or (value == 0 and not or_zero):
            raise UsageError(f"must be {'0 or more' if or_zero else 'a positive number'}, got {value}", flag_of(name))


def trackers_of(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """--report-to as the tuple of trackers it names, each checked to be installed."""
    import importlib.util

    names = [n.strip() for part in ([value] if isinstance(value, str) else value) for n in part.split(",")]
    names = [n for n in names if n and n != "none"]
    if names == ["all"]:
        return tuple(t for t in TRACKERS if importlib.util.find_spec(t) is not None)
    for name in names:
        if name not in TRACKERS:
            kinds = f"{', '.join(TRACKERS)} (several comma-separated), all or none"
            raise UsageError(f"must be one of {kinds}, got {name!r}", "--report-to")
        if importlib.util.find_spec(name) is None:
            raise UsageError(f"{name} is not installed here: pip install {name}", "--report-to")
    return tuple(dict.fromkeys(names))


def checkpoint_policy(value: str | int) -> str | int:
    """--checkpointing-steps as 'epoch', 'none' or a positive number of steps."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or (isinstance(value, str) and value not in ("epoch", "none")):
        raise UsageError(f"must be epoch, none or a number of steps, got {value!r}", "--checkpointing-steps")
    if isinstance(value, int) and not 0 < value < INT_LIMIT:
        raise UsageError(f"must be a positive number of steps, got {value}", "--checkpointing-steps")
    return value
