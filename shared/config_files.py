"""`--config FILE` (YAML or JSON, keyed by flag name) read into click's defaults, and `run_config.yaml`, the
settings a run writes back.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Iterable

from mlm_toolkit.errors import UsageError
from mlm_toolkit.hf_flags import ACCEPTED

RUN_CONFIG = "run_config"
SECRET = ("hub_token",)  # never written to disk


def _names(classes: Iterable[type]) -> dict[str, str]:
    """Every key a config file may use (any spelling, without dashes) -> the field or alias it sets."""
    names: dict[str, str] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            names[f.name] = f.name
            for alias in f.metadata.get("hf", ()):
                names[alias] = f.name
            for alias in [*f.metadata.get("hf_scaled", {}), *f.metadata.get("hf_flags", {})]:
                names[alias] = alias
    return names


def read_config_file(path: str, classes: Iterable[type], keys: dict | None = None, only_known=False) -> dict[str, Any]:
    """A config file's settings by field name (click's `default_map`); `keys` gets each as the file spells it."""
    import yaml

    file = Path(path).expanduser()
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError(f"it is over {MAX_CONFIG_BYTES >> 20} MB, more than any run's settings take")
        text = raw.decode()
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read {path!r}: {str(error).splitlines()[0]}", "--config") from error
    except RecursionError:
        raise UsageError(f"cannot read {path!r}: it nests too deep", "--config") from None
    check_bounded(data, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path!r} must hold a mapping of flag names to values", "--config")
    classes = list(classes)
    names, settings = _names(classes), {}
    hints = {name: hint for cls in classes for name, hint in typing.get_type_hints(cls).items()}
    for key, value in data.items():
        spelled = str(key).lstrip("-").replace("-", "_")
        if spelled in ACCEPTED:
            continue
        name = names.get(spelled)
        if name is None and only_known:  # another framework's run: its own options are not ours to read
            continue
        if name is None:
            raise UsageError(f"{path!r} has an unknown key {key!r}", "--config")
        if isinstance(value, (list, tuple)):  # --report-to: a list in YAML, comma-separated on the line
            if not all(isinstance(item, (str, int, float)) for item in value):
                raise UsageError(f"{path!r}: {key} must be a list of names, got {value!r:.80}", "--config")
            value = ",".join(map(str, value))
        settings[name] = typed(value, hints.get(name), f"{path!r}: {key}")
        if keys is not None:
            keys[name] = f"{key} in {path}"
    return settings


# A run's settings are a few dozen values. YAML aliases repeat one object without copying it, so a file of a
# few lines can stand for billions of values once anything walks them (an "alias bomb"): bounded before use.
MAX_CONFIG_BYTES, MAX_CONFIG_VALUES, MAX_CONFIG_DEPTH = 1 << 20, 10_000, 20


def check_bounded(data: Any, path: str) -> None:
    """Refuse a config whose values, aliases expanded, number over MAX_CONFIG_VALUES or nest too deep; the walk
    stops at the limit, so it costs no more than the limit."""
    stack, count = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES or depth > MAX_CONFIG_DEPTH:
            how = f"over {MAX_CONFIG_VALUES:,} values or {MAX_CONFIG_DEPTH} levels deep, aliases expanded"
            raise UsageError(f"{path!r} is {how}: not a run's settings", "--config")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)


def typed(value: Any, annotation: Any, where: str) -> Any:
    """A config file's value as its field's type: `max_steps: 1.7` is refused as `--max-steps 1.7` is, and a
    number YAML read as text ("2e-5") is a number."""
    from mlm_toolkit.values import accepts, describe

    if annotation is None or accepts(annotation, value):
        return value
    for kind in (int, float):
        if isinstance(value, str) and accepts(annotation, 0 if kind is int else 0.5):
            try:
                return kind(value)
            except ValueError:
                pass
    raise UsageError(f"{where} must be {describe(annotation)}, got {value!r}", "--config")


def config_format(path: str | None) -> str:
    return "json" if path and Path(path).suffix.lower() == ".json" else "yaml"


def write_run_config(folder: Path, settings: dict[str, Any], fmt: str) -> Path:
    """The run's resolved settings, every field by name, as a file `--config` reads back."""
    import yaml

    from mlm_toolkit.outputs import write_text_atomically

    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items() if k not in SECRET}
    path = folder / f"{RUN_CONFIG}.{fmt}"
    if fmt == "json":
        text = json.dumps(plain, indent=2) + "\n"
    else:
        text = "# The resolved settings of this run: repeat it with --config " + path.name + "\n"
        text += yaml.safe_dump(plain, sort_keys=False)
    write_text_atomically(path, text)
    return path
