"""The spellings a flag answers to, and `--config FILE`: so a `run_mlm.py` command line or config carries
over.

Each config field is one flag in our spelling (`--per-device-batch-size`), which also answers to its
underscore spelling (`--per_device_batch_size`) and to the Hugging Face names its field declares
(`hf=("per_device_train_batch_size",)`, dashes or underscores). Two Hugging Face flags take another form:
`--validation_split_percentage 5` is `--test-size 0.05` (`hf_scaled`), and `--fp16`/`--bf16` are values of
`--mixed-precision` (`hf_flags`). `--do_train`/`--do_eval` are accepted: `train` always trains and evaluates.

A config file (YAML or JSON) takes the same keys, in any of those spellings; flags on the command line win.
A run writes its whole resolved config back as `run_config.yaml` (or `.json`), which `--config` reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, Iterable, Iterator

import click

from mlm_toolkit.config import flag_of
from mlm_toolkit.errors import UsageError

ACCEPTED = ("do_train", "do_eval")  # run_mlm.py's switches, meaningless here: train does both
RUN_CONFIG = "run_config"
SECRET = ("hub_token",)  # never written to disk


def dashed(name: str) -> str:
    return "--" + name.replace("_", "-")


def spellings(name: str, aliases: Iterable[str] = ()) -> list[str]:
    """Every flag of a field: ours first, then its underscore spelling and each alias in both spellings."""
    names = [flag_of(name), "--" + name]
    for alias in aliases:
        names += ["--" + alias, dashed(alias)]
    return list(dict.fromkeys(names))


class Option(click.Option):
    """A click option whose help line shows our spelling alone: the command's epilog lists the others once."""

    def get_help_record(self, ctx: click.Context):
        opts, secondary = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = opts[:1], secondary[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


class RefusesRepeats(click.Command):
    """A command that refuses an option given with different values under two spellings
    (`--learning_rate 1 --learning-rate 2e-4`), naming both, where click lets the last one win silently. One
    spelling repeated keeps the shell's habit: the last one wins (a script appends its overrides)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = [p for p in self.params if isinstance(p, click.Option) and not p.multiple]
        spelled = {opt: p for p in options for opt in p.opts + p.secondary_opts}
        seen: dict[str, tuple[str, Any]] = {}
        position = 0
        while position < len(args) and args[position] != "--":
            name, equals, inline = str(args[position]).partition("=")
            param = spelled.get(name)
            position += 1
            if param is None:
                continue
            if param.is_flag:
                value: Any = name not in param.secondary_opts
            elif equals:
                value = inline
            else:
                value = str(args[position]) if position < len(args) else None
                position += 1
            first, before = seen.setdefault(param.name, (name, value))
            if first == name:
                seen[param.name] = (name, value)
            elif before != value:
                raise click.UsageError(
                    f"{first} and {name} set the same setting to {before!r} and {value!r}: give it once"
                )
        return super().parse_args(ctx, args)


def alias_options(cls: type) -> list[click.Option]:
    """The hidden options of the Hugging Face flags that take another form than ours (scaled, or a value)."""
    added = []
    for f in dataclasses.fields(cls):
        for alias in f.metadata.get("hf_scaled", {}):
            added.append(click.Option(spellings(alias), type=float, hidden=True, default=None))
        for alias in f.metadata.get("hf_flags", {}):
            added.append(click.Option(spellings(alias), is_flag=True, hidden=True, default=False))
    return added


# Trainer and run_mlm.py flags with no field of their own: what each becomes here, or why it is refused.
STRATEGIES = click.Choice(["no", "steps", "epoch"])
TRAINER_FLAGS: dict[str, Any] = {
    "eval_strategy": STRATEGIES,
    "evaluation_strategy": STRATEGIES,
    "save_strategy": STRATEGIES,
    "logging_dir": "TensorBoard logs go to OUTPUT/runs/ with --report-to tensorboard",
    "max_train_samples": "it counts blocks in run_mlm.py; here --max-samples N takes the first N rows",
    "run_name": "runs are named by --output-dir; trackers take their own settings (WANDB_NAME, ...)",
    "disable_tqdm": "the progress bar shows only on a terminal; off one, a line every --log-every steps",
    "tokenizer_name": "the tokenizer is --model's own (save it into the model folder to use another)",
    "pad_to_max_length": "--line-by-line pads every example to --block-size; grouped blocks need no padding",
    "load_best_model_at_end": "the final model is the last; every checkpoint-N is a model folder to evaluate",
    "metric_for_best_model": "the final model is the last; every checkpoint-N is a model folder to evaluate",
    "save_total_limit": "tf-mlm keeps the newest Keras backup and the one before it",
    "gradient_accumulation_steps": "tf-mlm does not accumulate: raise --per-device-batch-size",
}


def accepted_options(fields: Iterable[str] = ()) -> list[click.Option]:
    """run_mlm.py's switches that mean nothing here, and the Trainer flags of TRAINER_FLAGS (those `fields`
    does not have already), hidden from --help."""
    added = [click.Option(spellings(name), is_flag=True, hidden=True, default=False) for name in ACCEPTED]
    for name, kind in TRAINER_FLAGS.items():
        if name not in fields:
            flag = isinstance(kind, str) and name in (
                "disable_tqdm",
                "pad_to_max_length",
                "load_best_model_at_end",
            )
            type_ = None if flag else kind if isinstance(kind, click.Choice) else str
            added.append(
                click.Option(spellings(name), hidden=True, default=None, is_flag=flag or None, type=type_)
            )
    return added


def apply_trainer_flags(values: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The Trainer flags given (TRAINER_FLAGS, but `fields`) as our settings, or refused with what to use
    instead."""
    for name, kind in TRAINER_FLAGS.items():
        value = None if name in fields else values.pop(name, None)
        if value in (None, False):
            continue
        if isinstance(kind, str):
            raise UsageError(f"is not taken here: {kind}", dashed(name))
        if name == "save_strategy":  # --save_steps N is --checkpointing-steps N already
            if value != "steps" or values.get("checkpointing_steps") == "epoch":
                values["checkpointing_steps"] = {"no": "none", "epoch": "epoch", "steps": 500}[value]
        elif value == "no":
            raise UsageError("no: a run always evaluates, before training and after each epoch", dashed(name))
        elif value == "steps" and not values.get("eval_steps"):
            raise UsageError("steps needs --eval-steps N (--eval_steps N)", dashed(name))
    return values


def apply_aliases(ctx: click.Context, values: dict[str, Any], classes: Iterable[type]) -> dict[str, Any]:
    """`values` with the Hugging Face forms (`--fp16`, `--validation_split_percentage`) turned into our
    fields; one given beside our own flag for the same field is refused, naming both."""
    values = {k: v for k, v in values.items() if k not in ACCEPTED}
    for cls in classes:
        for f in dataclasses.fields(cls):
            given = []
            for alias, scale in f.metadata.get("hf_scaled", {}).items():
                if values.get(alias) is not None:
                    if not math.isfinite(values[alias]):
                        raise UsageError(f"must be a finite number, got {values[alias]}", "--" + alias)
                    given.append((alias, values[alias] * scale))
            for alias, value in f.metadata.get("hf_flags", {}).items():
                if values.get(alias):
                    given.append((alias, value))
            for alias in [*f.metadata.get("hf_scaled", {}), *f.metadata.get("hf_flags", {})]:
                values.pop(alias, None)
            ours = ctx.get_parameter_source(f.name) == click.core.ParameterSource.COMMANDLINE
            if len(given) + ours > 1:
                names = [flag_of(f.name)] * ours + [dashed(alias) for alias, _ in given]
                raise UsageError(f"give one of {' and '.join(names)}, not both", names[0])
            if given:
                values[f.name] = given[0][1]
                values.setdefault("_spelled", {})[flag_of(f.name)] = "--" + given[0][0]
    return values


@contextlib.contextmanager
def named_as_given(values: dict[str, Any]) -> Iterator[None]:
    """A field's error names the Hugging Face flag it was given as: `--validation_split_percentage 150` is
    refused as itself, not as the `--test-size 1.5` it became."""
    spelled = values.pop("_spelled", {})
    try:
        yield
    except UsageError as error:
        if error.flag not in spelled:
            raise
        message = str(error).removeprefix(f"{error.flag}: ")
        raise UsageError(f"as {error.flag} this {message}", spelled[error.flag]) from None


def epilog(classes: Iterable[type]) -> str:
    """The Hugging Face spellings of a command's flags, listed once."""
    pairs = []
    for cls in classes:
        for f in dataclasses.fields(cls):
            hf = ["--" + a for a in f.metadata.get("hf", ())]
            if hf:
                pairs.append(f"{' / '.join(hf)} = {flag_of(f.name)}")
            for alias, scale in f.metadata.get("hf_scaled", {}).items():
                pairs.append(f"--{alias} N = {flag_of(f.name)} N x {scale:g}")
            for alias, value in f.metadata.get("hf_flags", {}).items():
                pairs.append(f"--{alias} = {flag_of(f.name)} {value}")
    return (
        "Hugging Face spellings (run_mlm.py, the Trainer) are accepted, with dashes or underscores: "
        + "; ".join(pairs)
        + ". Every flag also takes underscores (--output_dir); --do_train and --do_eval are accepted "
        "(train always trains and evaluates). --config FILE (YAML or JSON) takes the same names as keys."
    )


# ---- config files


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


def read_config_file(path: str, classes: Iterable[type], keys: dict | None = None) -> dict[str, Any]:
    """A config file's settings by field name, in the form click's `default_map` takes; `keys` gets
    each field's key as the file spells it, for errors."""
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
        if name is None:
            raise UsageError(f"{path!r} has an unknown key {key!r}", "--config")
        if isinstance(value, (list, tuple)):  # --report-to: a list in YAML, comma-separated on the line
            value = ",".join(map(str, value))
        settings[name] = typed(value, hints.get(name), f"{path!r}: {key}")
        if keys is not None:
            keys[name] = f"{key} in {path}"
    return settings


def typed(value: Any, annotation: Any, where: str) -> Any:
    """A config file's value as its field's type, held to what the flag takes: `max_steps: 1.7` or `true`
    is refused, as `--max-steps 1.7` is, not cut to 1; a number YAML read as text ("2e-5") is a number."""
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

    from mlm_toolkit.run.outputs import write_text_atomically

    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items() if k not in SECRET}
    path = folder / f"{RUN_CONFIG}.{fmt}"
    if fmt == "json":
        text = json.dumps(plain, indent=2) + "\n"
    else:
        text = "# The resolved settings of this run: repeat it with --config " + path.name + "\n"
        text += yaml.safe_dump(plain, sort_keys=False)
    write_text_atomically(path, text)
    return path
