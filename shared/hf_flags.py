"""The Hugging Face spellings our flags answer to (run_mlm.py's, the Trainer's), and the flags of theirs we
take in another form or refuse with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Iterable, Iterator

import click

from mlm_toolkit.errors import UsageError
from mlm_toolkit.values import flag_of

# run_mlm.py's and the Trainer's switches that change nothing here: train trains and evaluates; evaluation is of
# the loss (and accuracy) alone; tokenizers are fast; transformers loads with little memory; the login's token.
ACCEPTED = ("do_train", "do_eval", "prediction_loss_only", "use_fast_tokenizer", "low_cpu_mem_usage", "use_auth_token")


def spellings(name: str, aliases: Iterable[str] = ()) -> list[str]:
    """Every flag of a field: ours first, then its underscore spelling and each alias in both spellings."""
    names = [flag_of(name), "--" + name]
    for alias in aliases:
        names += ["--" + alias, flag_of(alias)]
    return list(dict.fromkeys(names))


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
    "pad_to_max_length": "--line-by-line pads every example to --block-size; grouped blocks need no padding",
    "load_best_model_at_end": "the final model is the last; every checkpoint-N is a model folder to evaluate",
    "metric_for_best_model": "the final model is the last; every checkpoint-N is a model folder to evaluate",
    "save_total_limit": "tf-mlm keeps the newest Keras backup and the one before it",
    "gradient_accumulation_steps": "tf-mlm does not accumulate: raise --per-device-batch-size",
    "with_tracking": click.BOOL,  # run_mlm_no_trainer.py: log to --report-to, which is then "all" by default
    "optim": click.Choice(["adamw_torch", "adamw_torch_fused"]),
    "use_slow_tokenizer": "the fast tokenizer is needed (whole-word masking reads its word ids)",
    "eval_accumulation_steps": "evaluation keeps only sums per block on the device, never the logits",
    "data_seed": "one --seed draws the split, the order and the masks, so a run repeats from it",
    "full_determinism": "a CPU run repeats from --seed; on a GPU, set CUBLAS_WORKSPACE_CONFIG=:4096:8",
    "deepspeed": "use accelerate launch --use_deepspeed (Accelerate's config), which pt-mlm runs under",
    "fsdp": "use accelerate launch --use_fsdp (Accelerate's config), which pt-mlm runs under",
    "ddp_backend": "accelerate launch and torchrun choose it (gloo on CPUs, nccl on GPUs)",
    "gradient_checkpointing": "transformers' TensorFlow models cannot recompute activations: use pt-mlm",
    "dataloader_num_workers": "tf-mlm's batches come from tf.data (prepare_tf_dataset), which sets its own",
    "torch_dtype": "TensorFlow models load in float32; for bf16 compute give --mixed-precision mixed_bfloat16",
    "torch_compile": "TensorFlow compiles the step with XLA: give --jit-compile",
}
SWITCHES = {
    *"disable_tqdm pad_to_max_length load_best_model_at_end use_slow_tokenizer full_determinism".split(),
    *"gradient_checkpointing torch_compile".split(),
}


def accepted_options(fields: Iterable[str] = ()) -> list[click.Option]:
    """run_mlm.py's no-op switches and the TRAINER_FLAGS that `fields` lacks, hidden from --help."""
    added = [click.Option(spellings(name), is_flag=True, hidden=True, default=False) for name in ACCEPTED]
    for name, kind in TRAINER_FLAGS.items():
        if name not in fields:
            flag = kind is click.BOOL or name in SWITCHES
            type_ = None if flag else kind if isinstance(kind, click.Choice) else str
            added.append(click.Option(spellings(name), hidden=True, default=None, is_flag=flag or None, type=type_))
    return added


def apply_trainer_flags(values: dict[str, Any], fields: Iterable[str], given: Iterable[str] = ()) -> dict[str, Any]:
    """The TRAINER_FLAGS given (but `fields`) as our settings, or refused with what to use instead; `given`:
    the fields set on the command line or in --config."""
    for name, kind in TRAINER_FLAGS.items():
        value = None if name in fields else values.pop(name, None)
        if value in (None, False):
            continue
        if isinstance(kind, str):
            raise UsageError(f"is not taken here: {kind}", flag_of(name))
        if name == "with_tracking":
            values["report_to"] = values["report_to"] if "report_to" in given else "all"
        elif name == "optim":
            if "fused_adamw" not in fields:
                raise UsageError("is not taken here: tf-mlm trains with transformers' AdamWeightDecay", "--optim")
            values["fused_adamw"] = value == "adamw_torch_fused"
        elif name == "save_strategy":  # --save_steps N is --checkpointing-steps N already
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
