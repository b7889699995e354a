"""The click commands both CLIs share (train, evaluate, fill-mask), generated from the config dataclasses.

A flag is a config field (`options_from`, `build`); it also answers to its underscore spelling and to the
Hugging Face names its field declares (`--validation_split_percentage 5` is `--test-size 0.05`). `--config FILE`
(YAML or JSON) takes the same keys, flags given win; a run writes its settings back as `run_config.yaml`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import math
import os
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import click

from mlm_toolkit.config import MLMError, UsageError, choices_of, flag_of

ACCEPTED = ("do_train", "do_eval")  # run_mlm.py's switches, meaningless here: train does both
RUN_CONFIG = "run_config"
SECRET = ("hub_token",)  # never written to disk


def spellings(name: str, aliases: Iterable[str] = ()) -> list[str]:
    """Every flag of a field: ours first, then its underscore spelling and each alias in both spellings."""
    names = [flag_of(name), "--" + name]
    for alias in aliases:
        names += ["--" + alias, flag_of(alias)]
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
    """Refuses an option given different values under two spellings (`--learning_rate 1 --learning-rate 2`),
    where click lets the last win silently; one spelling repeated keeps the shell's habit: the last wins."""

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
                same = f"{first} and {name} set the same setting to {before!r} and {value!r}"
                raise click.UsageError(f"{same}: give it once")
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
    """run_mlm.py's no-op switches and the TRAINER_FLAGS that `fields` lacks, hidden from --help."""
    added = [click.Option(spellings(name), is_flag=True, hidden=True, default=False) for name in ACCEPTED]
    for name, kind in TRAINER_FLAGS.items():
        if name not in fields:
            flag = name in ("disable_tqdm", "pad_to_max_length", "load_best_model_at_end")  # switches
            type_ = None if flag else kind if isinstance(kind, click.Choice) else str
            added.append(click.Option(spellings(name), hidden=True, default=None, is_flag=flag or None, type=type_))
    return added


def apply_trainer_flags(values: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The TRAINER_FLAGS given (but `fields`) as our settings, or refused with what to use instead."""
    for name, kind in TRAINER_FLAGS.items():
        value = None if name in fields else values.pop(name, None)
        if value in (None, False):
            continue
        if isinstance(kind, str):
            raise UsageError(f"is not taken here: {kind}", flag_of(name))
        if name == "save_strategy":  # --save_steps N is --checkpointing-steps N already
            if value != "steps" or values.get("checkpointing_steps") == "epoch":
                values["checkpointing_steps"] = {"no": "none", "epoch": "epoch", "steps": 500}[value]
        elif value == "no":
            raise UsageError("no: a run always evaluates, before training and after each epoch", flag_of(name))
        elif value == "steps" and not values.get("eval_steps"):
            raise UsageError("steps needs --eval-steps N (--eval_steps N)", flag_of(name))
    return values


def apply_aliases(ctx: click.Context, values: dict[str, Any], classes: Iterable[type]) -> dict[str, Any]:
    """The Hugging Face forms (`--fp16`, `--validation_split_percentage`) as our fields; refused beside ours."""
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
                names = [flag_of(f.name)] * ours + [flag_of(alias) for alias, _ in given]
                raise UsageError(f"give one of {' and '.join(names)}, not both", names[0])
            if given:
                values[f.name] = given[0][1]
                values.setdefault("_spelled", {})[flag_of(f.name)] = "--" + given[0][0]
    return values


@contextlib.contextmanager
def named_as_given(values: dict[str, Any]) -> Iterator[None]:
    """A field's error names the flag it was given as (`--validation_split_percentage 150`, not `--test-size`)."""
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


T = TypeVar("T")


def _click_type(annotation: Any) -> Any:
    """The click type of a field annotation such as `int | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if len(args) == 1 else annotation
    return base if base in (int, float, str, bool) else str


def options_from(*config_classes: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option per field of each config dataclass."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for cls in reversed(config_classes):
            hints = typing.get_type_hints(cls)
            for f in reversed(dataclasses.fields(cls)):
                meta = dict(f.metadata)
                help_text = meta.pop("help", "")
                choices = choices_of(hints[f.name])
                click_type = click.Choice(choices) if choices else _click_type(hints[f.name])
                kwargs: dict[str, Any] = {"default": f.default, "show_default": True, "help": help_text}
                decls = spellings(f.name, meta.pop("hf", ()))
                for other in ("hf_scaled", "hf_flags"):  # other forms: hidden options of their own
                    meta.pop(other, None)
                if meta.pop("switch", False):  # --jit-compile/--no-jit-compile, --jit_compile/--no_jit_compile
                    decls = [f"{decl}/--no{decl[1] if '_' in decl else '-'}{decl[2:]}" for decl in decls]
                elif meta.pop("is_flag", False):
                    kwargs.update(is_flag=True, show_default=False)
                else:
                    kwargs["type"] = click_type
                kwargs.update(meta)
                command = click.option(*decls, f.name, cls=Option, **kwargs)(command)
        return command

    return decorate


def build(cls: type[T], values: dict[str, Any]) -> T:
    """The validated config `cls` from the parsed CLI values (ignores keys of other configs)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """The toolkit's errors as one line and exit 2 (bad usage, as click's) or 1 (a failed run), no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MLMError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as error:  # a full disk, a folder that became read-only: say which file and why
            click.echo(f"Error: {describe_os_error(error)} (details: {write_crash_log()})", err=True)
            sys.exit(1)
        except Exception as error:  # nobody foresaw this one: one line, and the traceback in a file
            click.echo(f"Error: unexpected {type(error).__name__}: {error} (traceback: {write_crash_log()})", err=True)
            sys.exit(1)

    return wrapper


def describe_os_error(error: OSError) -> str:
    import errno
    import shutil

    where = error.filename or "a file"
    message = f"{error.strerror or error} while writing {where}"
    if error.errno == errno.ENOSPC:
        folder = Path(str(where)).parent if error.filename else Path.cwd()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free / 2**20
        message += f"; {free:,.0f} MiB free there: free some space and --resume auto"
    return message


def write_crash_log() -> str:
    """The current exception's traceback in a file of its own; returns its path."""
    import tempfile
    import time
    import traceback

    path = Path(tempfile.gettempdir()) / f"mlm-toolkit-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(traceback.format_exc())
    return str(path)


def is_main_process() -> bool:
    """False in every process but the first of a torchrun/accelerate launch (they set RANK)."""
    return os.environ.get("RANK", "0") == "0"


def setup_logging(verbose: bool = False) -> None:
    import logging

    # Under torchrun/accelerate launch the main process speaks for all, warnings included (each process
    # would print the same one); the others print only errors, theirs alone.
    quiet = logging.WARNING if is_main_process() else logging.ERROR
    logging.basicConfig(
        level=logging.INFO if is_main_process() else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Library chatter (HTTP, fonts, TF start-up) would bury the run's own derived numbers.
    for noisy in "httpx urllib3 matplotlib datasets filelock absl tensorflow h5py accelerate".split():
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else quiet)
    if not is_main_process():  # transformers and datasets log through handlers of their own
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")


def print_summary(results, output_dir: str) -> None:
    """The lines a user looks for when a run ends (`results`: a `mlm_toolkit.report.Results`)."""
    if not is_main_process():
        return
    for when, at in (("before:", results.before), ("after: ", results.after)):
        click.echo(f"perplexity {when} {at.perplexity:.2f} (eval loss {at.eval_loss:.4f}), accuracy {at.accuracy:.4f}")
    speed = "n/a" if results.train_tokens_per_second is None else f"{results.train_tokens_per_second:,.0f}"
    steps = f"{results.optimizer_steps} optimizer steps"
    click.echo(f"{steps}, {speed} train tokens/s on {results.device}; saved to {output_dir}")


def fill_mask_command(load_filler: Callable[[str], Any]) -> click.Command:
    """`*-mlm fill-mask MODEL TEXT...`: the same command for both frameworks, each with its own filler."""

    @click.command("fill-mask")
    @click.argument("model")
    @click.argument("texts", metavar="[TEXT]...", nargs=-1)
    @click.option("--file", "text_file", type=click.File("r"), help="Texts, one per line ('-' reads standard input).")
    @click.option("--top-k", default=5, show_default=True, type=int, help="Predictions per mask.")
    @click.option(
        "--target", "targets", multiple=True, help="Rank only this word (the pipeline's targets); repeatable."
    )
    @click.option(
        "--json", "as_json", is_flag=True, help='One JSON array: {"text": ..., "masks": [[...], ...]} per TEXT.'
    )
    @reports_errors
    def fill_mask(model: str, texts: tuple[str, ...], text_file, top_k: int, targets, as_json: bool) -> None:
        """Fill <mask> (or [MASK]) in each TEXT with MODEL (a trained folder, built-in or Hub id)."""
        from mlm_toolkit.fill_mask import format_predictions, predictions_as_json

        if text_file is not None:
            try:
                texts = texts + tuple(line.rstrip("\n") for line in text_file if line.strip())
            except UnicodeDecodeError as error:
                from mlm_toolkit.sources import check_utf8

                if Path(text_file.name).is_file():
                    check_utf8(Path(text_file.name), "--file")  # says which line and byte
                raise UsageError(f"{text_file.name} is not UTF-8 text ({error.reason})", "--file") from None
        if not texts:
            raise UsageError("give the texts to fill as arguments or with --file", "TEXT")
        filler = load_filler(model)
        try:
            filled = filler(list(texts), top_k=top_k, targets=list(targets) or None)
        except UsageError as error:  # the filler names its Python arguments; here they are flags
            flag = {"texts": "TEXT", "top_k": "--top-k", "targets": "--target"}.get(error.flag, error.flag)
            raise UsageError(error.detail, flag) from None
        results = list(zip(texts, filled, strict=True))
        if as_json:
            click.echo(predictions_as_json(results))
            return
        for text, predictions in results:
            click.echo(format_predictions(text, predictions))

    return fill_mask


def run_config_of(model: str) -> Path | None:
    """The run_config file of a run folder, or of the run a `checkpoint-N` folder belongs to."""
    folder = Path(model).expanduser()
    for where in (folder, folder.parent) if folder.name.startswith("checkpoint-") else (folder,):
        for name in ("run_config.yaml", "run_config.json"):
            if (where / name).is_file():
                return where / name
    return None


def evaluate_command(evaluate_fn: Callable[[Any], Any], train_classes: tuple[type, ...]) -> click.Command:
    """`*-mlm evaluate MODEL`: the same command for both frameworks, each with its own evaluator."""
    from mlm_toolkit.config import DataConfig, EvalConfig, EvalSettings, ModelConfig

    measured = {f.name for cls in (DataConfig, EvalSettings) for f in dataclasses.fields(cls)}

    @click.command("evaluate", epilog=epilog([DataConfig, EvalSettings]))
    @click.argument("model")
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="Data settings from a training config (a run's run_config.yaml); flags given win. A run folder "
        "given as MODEL with no data flag is evaluated on its own run_config.",
    )
    @options_from(DataConfig, EvalSettings)
    @click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
    @click.option("--output-file", type=click.Path(dir_okay=False), help="Also write them to this JSON file.")
    @click.option("--overwrite", is_flag=True, help="Replace an existing --output-file.")
    @click.pass_context
    @reports_errors
    def evaluate(
        ctx, model: str, config_file, as_json: bool, output_file: str | None, overwrite: bool, **values
    ) -> None:
        """The perplexity of MODEL (a trained folder, built-in or cached Hub id) on the held-out blocks of a
        dataset, masked once with --seed: the figure a training run with the same data settings reports."""
        from mlm_toolkit.evaluation import check_writable_file, evaluation_json, write_evaluation

        setup_logging()
        given = {k for k in values if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        source = config_file or (None if given & measured else run_config_of(model))
        if source:
            try:
                saved = read_config_file(str(source), train_classes)
            except MLMError as error:
                raise click.BadParameter(str(error).removeprefix("--config: "), param_hint="--config") from None
            values.update({k: v for k, v in saved.items() if k in measured and k not in given and v is not None})
            if not config_file:
                click.echo(f"evaluating on the run's own data settings ({source})", err=True)
        values = apply_aliases(ctx, values, [DataConfig, EvalSettings])
        with named_as_given(values):
            config = EvalConfig(ModelConfig(model), build(DataConfig, values), build(EvalSettings, values))
        if output_file:  # checked before the work, not after it
            check_writable_file(Path(output_file), overwrite)
        result = evaluate_fn(config)
        if output_file:
            write_evaluation(Path(output_file), result, overwrite)
        if as_json:
            click.echo(evaluation_json(result))
        else:
            click.echo(
                f"perplexity: {result.perplexity:.2f} (eval loss {result.eval_loss:.4f}), "
                f"accuracy {result.accuracy:.4f} on "
                f"{result.eval_blocks} held-out blocks ({result.held_out}) of {result.dataset}"
            )

    evaluate.params.extend(alias_options(DataConfig))
    return evaluate


def lazy_api(package: str, modules: dict[str, str], environment: Callable[[], Any]) -> Callable[[str], Any]:
    """A package's `__getattr__` (PEP 562): `train`, `evaluate` and `MaskFiller` imported on first use, within
    `environment()` (what the framework reads when first imported), so `--help` loads no framework."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        with environment():
            return getattr(importlib.import_module(f"{package}.{modules[name]}"), name)

    return __getattr__


def make_cli(
    prog: str,
    summary: str,
    options_cls: type,
    api: Callable[[str], Any] | None = None,
    train: Callable[..., Any] | None = None,
    filler: Callable[[str], Any] | None = None,
    evaluate: Callable[[Any], Any] | None = None,
    version: str | None = None,
) -> click.Group:
    """The `tf-mlm`/`pt-mlm` command group (train, evaluate, fill-mask), one definition for both. `api(name)` gives
    the package's `train`, `evaluate` or `MaskFiller`; `train`, `filler` and `evaluate` replace one of them."""
    train_fn = train or (lambda run, options: api("train")(run, options))
    load_filler = filler or (lambda model: api("MaskFiller")(model))
    evaluate_fn = evaluate or (api and (lambda config: api("evaluate")(config)))

    from mlm_toolkit.config import DataConfig, HubConfig, ModelConfig, RunConfig, TrainConfig
    from mlm_toolkit.report import completed_results
    from mlm_toolkit.run import check_finished_run

    @click.group(help=summary, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    @click.version_option(version, prog_name=prog)
    def main() -> None:
        pass

    classes = (DataConfig, ModelConfig, TrainConfig, HubConfig, options_cls)
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}

    def with_config_file(ctx: click.Context, _param, paths: tuple[str, ...]) -> str | None:
        """--config: its settings become every other flag's defaults; several files merge, later keys win."""
        for path in paths:
            try:
                keys = ctx.meta.setdefault("config_keys", {})
                ctx.default_map = {**(ctx.default_map or {}), **read_config_file(path, classes, keys)}
            except MLMError as error:
                message = str(error).removeprefix("--config: ")
                raise click.BadParameter(message, param_hint="--config") from None
        return paths[-1] if paths else None

    @main.command("train", cls=RefusesRepeats, epilog=epilog(classes))
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=True,
        callback=with_config_file,
        multiple=True,
        help="A YAML or JSON file of settings, keyed by flag name (a run writes its own as run_config.yaml); "
        "several merge in order.",
    )
    @options_from(*classes)
    @click.option("--verbose", is_flag=True, help="Also show library debug logs.")
    @click.pass_context
    @reports_errors
    def train_command(ctx: click.Context, verbose: bool, config_file: str | None, **values: Any) -> None:
        """Fine-tune a masked LM; every default is the Hugging Face guide's recipe (DistilRoBERTa on ELI5)."""
        setup_logging(verbose)
        values = apply_trainer_flags(apply_aliases(ctx, values, classes), fields)
        for name, key in ctx.meta.get("config_keys", {}).items():  # a wrong value names its config key
            if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT_MAP:
                values.setdefault("_spelled", {}).setdefault(flag_of(name), key)
        with named_as_given(values):
            parts = [build(cls, values) for cls in (DataConfig, ModelConfig, TrainConfig, HubConfig)]
            run = RunConfig(*parts, config_format=config_format(config_file))
            options = build(options_cls, values)
        finished = completed_results(Path(run.train.output_dir).expanduser()) if run.train.resume else None
        if finished:  # said here, where the user reads it; train() returns it untouched as well
            check_finished_run(finished.config, run, options, run.train.output_dir)
            steps = f"{finished.optimizer_steps} optimizer steps"
            click.echo(f"{run.train.output_dir} holds a complete run ({steps}); nothing to resume. Its figures:")
            print_summary(finished, run.train.output_dir)
            return
        print_summary(train_fn(run, options), run.train.output_dir)

    train_command.params.extend([*alias_options(DataConfig), *alias_options(options_cls), *accepted_options(fields)])
    main.add_command(fill_mask_command(load_filler))
    if evaluate_fn is not None:
        main.add_command(evaluate_command(evaluate_fn, classes))
    return main
