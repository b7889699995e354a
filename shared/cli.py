"""The click commands both CLIs share (train, evaluate, fill-mask), generated from the config dataclasses.

A flag is a config field (`options_from`, `build`); it also answers to its underscore spelling and to the
Hugging Face names its field declares (`mlm_toolkit.hf_flags`). `--config FILE` (YAML or JSON) takes the same
keys, flags given win (`mlm_toolkit.config_files`).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

import mlm_toolkit.compat
from mlm_toolkit.config_files import config_format, read_config_file
from mlm_toolkit.console import print_summary, reports_errors, setup_logging
from mlm_toolkit.errors import MLMError, UsageError
from mlm_toolkit.hf_flags import (
    accepted_options,
    alias_options,
    apply_aliases,
    apply_trainer_flags,
    epilog,
    named_as_given,
    spellings,
)
from mlm_toolkit.values import choices_of, flag_of


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


T = TypeVar("T")


def _click_type(annotation: Any) -> Any:
    """The click type of a field annotation such as `int | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if len(args) == 1 else annotation
    return base if base in (int, float, str, bool) else str


def options_from(
    *config_classes: type, only: tuple[str, ...] = (), helps: dict[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option per field of each config dataclass (those named in `only`, if given;
    `helps`: another command's help for some of them)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for cls in reversed(config_classes):
            hints = typing.get_type_hints(cls)
            for f in reversed([f for f in dataclasses.fields(cls) if not only or f.name in only]):
                meta = dict(f.metadata)
                help_text = meta.pop("help", "")
                help_text = (helps or {}).get(f.name, help_text)
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
                from mlm_toolkit.data_sources import check_utf8

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
        "given as MODEL is evaluated on its own run_config, the flags given over it.",
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
        source = config_file or run_config_of(model)  # the flags given win over what it says
        if source:
            try:
                saved = read_config_file(str(source), train_classes, only_known=not config_file)
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


def train_tokenizer_command() -> click.Command:
    """`*-mlm train-tokenizer`: the same command for both frameworks (it needs neither)."""
    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.tokenizer_training import DATA_FIELDS, DATA_HELPS, TokenizerConfig

    @click.command("train-tokenizer")
    @options_from(TokenizerConfig)
    @options_from(DataConfig, only=DATA_FIELDS, helps=DATA_HELPS)
    @reports_errors
    def train_tokenizer(**values: Any) -> None:
        """Train a tokenizer on a dataset's texts, to pretrain a model from scratch with --tokenizer-name."""
        from mlm_toolkit.tokenizer_training import train_tokenizer

        setup_logging()
        with named_as_given(values):
            config, data = build(TokenizerConfig, values), build(DataConfig, values)
        train_tokenizer(config, data)

    return train_tokenizer


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
    from mlm_toolkit.metrics import completed_results
    from mlm_toolkit.run import check_finished_run

    @click.group(help=summary, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    @click.version_option(version, prog_name=prog)
    def main() -> None:
        mlm_toolkit.compat.trim_imports = True  # this is the CLI's process (docs/compat.md)

    classes = (DataConfig, ModelConfig, TrainConfig, HubConfig, options_cls)
    # Our fields and the Hugging Face names they answer to: no refusal of TRAINER_FLAGS shadows these.
    fields = {name for cls in classes for f in dataclasses.fields(cls) for name in (f.name, *f.metadata.get("hf", ()))}

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
        sources = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.DEFAULT_MAP)
        given = {name for name in values if ctx.get_parameter_source(name) in sources}
        values = apply_trainer_flags(apply_aliases(ctx, values, classes), fields, given)
        for name, key in ctx.meta.get("config_keys", {}).items():  # a wrong value names its config key
            if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT_MAP:
                values.setdefault("_spelled", {}).setdefault(flag_of(name), key)
        with named_as_given(values):
            parts = [build(cls, values) for cls in (DataConfig, ModelConfig, TrainConfig, HubConfig)]
            run = RunConfig(*parts, config_format=config_format(config_file))
            options = build(options_cls, values)
        mlm_toolkit.compat.trim_imports = options.workarounds
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
    main.add_command(train_tokenizer_command())
    if evaluate_fn is not None:
        main.add_command(evaluate_command(evaluate_fn, classes))
    return main
