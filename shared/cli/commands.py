"""Click glue both CLIs share: options generated from the config dataclasses, and error mapping.

A flag is defined once, as a config field (`mlm_toolkit.config`); `options_from(DataConfig)` turns the
fields into click options with the same defaults and help, and `build(DataConfig, kwargs)` turns the
parsed values back into the validated dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from mlm_toolkit.config import choices_of, flag_of
from mlm_toolkit.errors import MLMError, UsageError
from mlm_toolkit.cli.flags import (
    Option,
    RefusesRepeats,
    accepted_options,
    apply_trainer_flags,
    alias_options,
    apply_aliases,
    config_format,
    epilog,
    named_as_given,
    read_config_file,
    spellings,
)

T = TypeVar("T")

_SCALARS = {int: int, float: float, str: str, bool: bool}


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, optional) for a field annotation such as `int | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = len(args) == 1
    base = args[0] if optional else annotation
    return _SCALARS.get(base, str), optional


def options_from(*config_classes: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option per field of each config dataclass."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for cls in reversed(config_classes):
            hints = typing.get_type_hints(cls)
            for f in reversed(dataclasses.fields(cls)):
                meta = dict(f.metadata)
                help_text = meta.pop("help", "")
                choices = choices_of(hints[f.name])
                click_type, _ = _click_type(hints[f.name])
                if choices:
                    click_type = click.Choice(choices)
                kwargs: dict[str, Any] = {"default": f.default, "show_default": True, "help": help_text}
                decls = spellings(f.name, meta.pop("hf", ()))
                for other in ("hf_scaled", "hf_flags"):  # other forms: hidden options of their own
                    meta.pop(other, None)
                if meta.pop(
                    "switch", False
                ):  # --jit-compile/--no-jit-compile, --jit_compile/--no_jit_compile
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
    """Turn the toolkit's errors into one clean line and the right exit code, never a traceback.

    Usage errors exit 2 (click's convention for bad usage), failed runs exit 1.
    """

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
            click.echo(
                f"Error: unexpected {type(error).__name__}: {error} (traceback: {write_crash_log()})",
                err=True,
            )
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

    path = (
        Path(tempfile.gettempdir()) / f"mlm-toolkit-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    )
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
    for noisy in (
        "httpx",
        "urllib3",
        "matplotlib",
        "datasets",
        "filelock",
        "absl",
        "tensorflow",
        "h5py",
        "accelerate",
    ):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else quiet)
    if not is_main_process():  # transformers and datasets log through handlers of their own
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")


def print_summary(results, output_dir: str) -> None:
    """The lines a user looks for when a run ends (`results`: a `mlm_toolkit.run.results.Results`),
    printed once."""
    if not is_main_process():
        return
    before, after, speed = results.before, results.after, results.train_tokens_per_second
    click.echo(
        f"perplexity before: {before.perplexity:.2f} (eval loss {before.eval_loss:.4f}), "
        f"accuracy {before.accuracy:.4f}\n"
        f"perplexity after:  {after.perplexity:.2f} (eval loss {after.eval_loss:.4f}), "
        f"accuracy {after.accuracy:.4f}\n"
        f"{results.optimizer_steps} optimizer steps, {'n/a' if speed is None else format(speed, ',.0f')} "
        f"train tokens/s on {results.device}; saved to {output_dir}"
    )


def fill_mask_command(load_filler: Callable[[str], Any]) -> click.Command:
    """`*-mlm fill-mask MODEL TEXT...`: the same command for both frameworks, each with its own filler."""

    @click.command("fill-mask")
    @click.argument("model")
    @click.argument("texts", metavar="[TEXT]...", nargs=-1)
    @click.option(
        "--file",
        "text_file",
        type=click.File("r"),
        default=None,
        help="Read texts from this file, one per line ('-' reads standard input).",
    )
    @click.option("--top-k", default=5, show_default=True, type=int, help="Predictions per mask.")
    @click.option(
        "--target",
        "targets",
        multiple=True,
        help="Rank only this word (the pipeline's targets); repeat it for several.",
    )
    @click.option(
        "--json",
        "as_json",
        is_flag=True,
        help='Print one JSON array, an object per TEXT: {"text": ..., "masks": [[prediction, ...], ...]}.',
    )
    @reports_errors
    def fill_mask(model: str, texts: tuple[str, ...], text_file, top_k: int, targets, as_json: bool) -> None:
        """Fill <mask> (or [MASK]) in each TEXT with MODEL (a trained folder, built-in or Hub id)."""
        from mlm_toolkit.fill_mask import format_predictions, predictions_as_json

        if text_file is not None:
            try:
                texts = texts + tuple(line.rstrip("\n") for line in text_file if line.strip())
            except UnicodeDecodeError as error:
                from mlm_toolkit.data.sources import check_utf8

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
    from mlm_toolkit.config import DataConfig, ModelConfig
    from mlm_toolkit.run.evaluation import EvalConfig, EvalSettings

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
        from mlm_toolkit.run.evaluation import check_writable_file, evaluation_json, write_evaluation

        setup_logging()
        given = {k for k in values if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        source = config_file or (None if given & measured else run_config_of(model))
        if source:
            try:
                saved = read_config_file(str(source), train_classes)
            except MLMError as error:
                raise click.BadParameter(
                    str(error).removeprefix("--config: "), param_hint="--config"
                ) from None
            values.update(
                {k: v for k, v in saved.items() if k in measured and k not in given and v is not None}
            )
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


def make_cli(
    prog: str,
    summary: str,
    options_cls: type,
    train: Callable[..., Any],
    filler: Callable[[str], Any],
    evaluate: Callable[[Any], Any] | None = None,
    version: str | None = None,
) -> click.Group:
    """The `tf-mlm`/`pt-mlm` command group: `train` (shared configs + the framework's options), `evaluate`
    and `fill-mask`. One definition, so the two CLIs cannot drift apart. `train(run, options)`,
    `filler(model)` and `evaluate(config)` import their framework when called, so `--help` loads none."""
    train_fn, load_filler, evaluate_fn = train, filler, evaluate

    from mlm_toolkit.config import DataConfig, HubConfig, ModelConfig, RunConfig, TrainConfig
    from mlm_toolkit.run.identity import check_finished_run
    from mlm_toolkit.run.results import completed_results

    @click.group(
        help=summary, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
    )
    @click.version_option(version, prog_name=prog)
    def main() -> None:
        pass

    classes = (DataConfig, ModelConfig, TrainConfig, HubConfig, options_cls)
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}

    def with_config_file(ctx: click.Context, _param, paths: tuple[str, ...]) -> str | None:
        """--config: its settings become the defaults of every other flag (a flag given still wins); several
        files merge in the order given, a later one's keys over an earlier one's."""
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
            run = RunConfig(
                build(DataConfig, values),
                build(ModelConfig, values),
                build(TrainConfig, values),
                build(HubConfig, values),
                config_format=config_format(config_file),
            )
            options = build(options_cls, values)
        finished = completed_results(Path(run.train.output_dir).expanduser()) if run.train.resume else None
        if finished:  # said here, where the user reads it; train() returns it untouched as well
            check_finished_run(finished.config, run, options, run.train.output_dir)
            click.echo(
                f"{run.train.output_dir} holds a complete run ({finished.optimizer_steps} optimizer steps); "
                "nothing to resume. Its figures:"
            )
            print_summary(finished, run.train.output_dir)
            return
        print_summary(train_fn(run, options), run.train.output_dir)

    train_command.params.extend(
        [
            *alias_options(DataConfig),
            *alias_options(options_cls),
            *accepted_options(fields),
        ]
    )
    main.add_command(fill_mask_command(load_filler))
    if evaluate is not None:
        main.add_command(evaluate_command(evaluate_fn, classes))
    return main
