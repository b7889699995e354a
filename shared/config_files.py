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
        text = file.read_text()
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read {path!r}: {str(error).splitlines()[0]}", "--config") from error
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
            value = ",".join(map(str, value))
        settings[name] = typed(value, hints.get(name), f"{path!r}: {key}")
        if keys is not None:
            keys[name] = f"{key} in {path}"
    return settings


def typed(value: Any, annotation: Any, where: str) -> Any:
    """A config file's value as its field's type: `max_steps: 1.7` is refused as `--max-steps 1.7` is, and a
    number YAML read as text ("2e-5") is a number."""
    from mlm_toolkit.config import accepts, describe

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
