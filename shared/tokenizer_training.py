"""`*-mlm train-tokenizer`: a tokenizer for a new corpus (run_mlm.py leaves it "to another script"), to
pretrain with `--tokenizer-name`.

The texts are read as a training run reads them (`--dataset`, `--text-column`, `--max-samples`), in batches from
datasets' memory-mapped Arrow or from a stream, so memory stays flat in the corpus size. The folder holds the
special tokens an MLM needs (mask, pad, the sequence marks, unknown) and loads with `AutoTokenizer`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from mlm_toolkit.config import DataConfig, option
from mlm_toolkit.errors import UsageError
from mlm_toolkit.values import check_positive

log = logging.getLogger(__name__)

# The DataConfig fields that say which texts to read (the rest shape training blocks).
DATA_FIELDS = ("dataset", "dataset_config", "train_split", "text_column", "max_samples", "streaming")
DATA_HELPS = {"streaming": "Read --dataset as a stream (datasets' IterableDataset): for corpora larger than disk."}
BATCH = 1000  # texts handed to the trainer at a time
# What a tokenizer folder may hold: --overwrite-output-dir replaces these and nothing else.
TOKENIZER_FILES = {
    *"tokenizer.json tokenizer_config.json special_tokens_map.json added_tokens.json vocab.txt vocab.json".split(),
    *"merges.txt spiece.model sentencepiece.bpe.model tokenizer.model chat_template.jinja".split(),
}
# Each kind's special tokens in id order, with the mask and the marks of a sequence. WordPiece is BERT's;
# BPE (byte-level) and Unigram take RoBERTa's order, whose padding id 1 TensorFlow's RoBERTa needs.
SPECIALS = {
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "bpe": {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"},
    "unigram": {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"},
}


@dataclass(frozen=True)
class TokenizerConfig:
    output_dir: str | None = option(None, "Write the tokenizer folder here (required).")
    kind: Literal["wordpiece", "bpe", "unigram"] | None = option(
        None, "The algorithm: wordpiece (BERT's, the default), bpe (byte-level, RoBERTa's) or unigram."
    )
    like: str | None = option(
        None, "Instead of --kind: MODEL's own tokenizer (algorithm, normalization, specials) trained anew."
    )
    vocab_size: int = option(32_000, "Tokens at most (a small corpus may give fewer).")
    min_frequency: int | None = option(None, "Keep pieces seen at least this often (wordpiece, bpe; default 2).")
    lowercase: bool = option(
        False, "Lowercase the texts first (--kind only; --like keeps MODEL's rule).", is_flag=True
    )
    model_max_length: int = option(512, "The longest input the tokenizer admits (its models' positions).")
    overwrite_output_dir: bool = option(False, "Replace a tokenizer already in --output-dir.", is_flag=True)

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise UsageError("name the folder to write the tokenizer to", "--output-dir")
        if self.kind and self.like:
            raise UsageError("give --kind or --like, not both", "--like")
        check_positive(self, "vocab_size", "min_frequency", "model_max_length", allow_none=True)


def corpus(data: DataConfig) -> tuple[Iterator[list[str]], int | None]:
    """Batches of the texts a training run on `data` reads (held-out rows included), and their count where
    known before reading (not for a stream)."""
    import datasets

    from mlm_toolkit.data_sources import column_names, load_rows, resolve_text_column, texts_of

    rows = load_rows(data)
    texts = texts_of(rows, resolve_text_column(data, column_names(rows)), data.preprocessing_num_workers)
    length = None if isinstance(texts, datasets.IterableDataset) else len(texts)
    if length == 0:
        raise UsageError(f"{data.dataset!r} has no text to train a tokenizer on", "--dataset")
    return (batch["text"] for batch in texts.iter(batch_size=BATCH)), length


def fresh_tokenizer(config: TokenizerConfig):
    """An untrained `tokenizers.Tokenizer` of `config.kind`, with its trainer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    kind = config.kind or "wordpiece"
    specials = SPECIALS[kind]
    tokens = list(specials.values())
    cls, sep = specials["cls"], specials["sep"]
    pair = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tokens.index(cls)), (sep, tokens.index(sep))],
    )
    frequency = {"min_frequency": config.min_frequency or 2}
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=specials["unk"]))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size, special_tokens=tokens, **frequency)
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.normalizer = normalizers.Lowercase() if config.lowercase else None
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=config.vocab_size, special_tokens=tokens, initial_alphabet=alphabet, **frequency
        )
        pair = processors.RobertaProcessing((sep, tokens.index(sep)), (cls, tokens.index(cls)), add_prefix_space=False)
    else:
        if config.min_frequency:
            raise UsageError("unigram keeps pieces by likelihood, not by count: leave it out", "--min-frequency")
        tokenizer = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC(), *([normalizers.Lowercase()] if config.lowercase else [])]
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=config.vocab_size, special_tokens=tokens, unk_token=specials["unk"]
        )
    tokenizer.post_processor = pair
    return tokenizer, trainer


def as_transformers(tokenizer, config: TokenizerConfig):
    """The trained `tokenizer` as a transformers fast tokenizer naming its special tokens."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    specials = {f"{role}_token": token for role, token in SPECIALS[config.kind or "wordpiece"].items()}
    if config.kind in ("bpe", "unigram"):  # as RoBERTa's and ALBERT's: "a <mask>" masks the word with its space
        specials["mask_token"] = AddedToken(specials["mask_token"], lstrip=True, special=True)
    if config.kind != "wordpiece" and config.kind:
        specials.update(bos_token=specials["cls_token"], eos_token=specials["sep_token"])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=config.model_max_length, **specials)


def like_model(config: TokenizerConfig, batches, length):
    """--like MODEL: its tokenizer's own pipeline and specials, trained on the corpus."""
    import json

    from mlm_toolkit.models import load_tokenizer, resolved_tokenizer

    base = load_tokenizer(resolved_tokenizer(config.like, "--like"), "--like")
    algorithm = json.loads(base.backend_tokenizer.to_str())["model"]["type"]
    extra = {}
    if config.min_frequency:
        if algorithm not in ("BPE", "WordPiece"):
            raise UsageError(
                f"{config.like!r}'s {algorithm} tokenizer keeps no counts: leave it out", "--min-frequency"
            )
        extra["min_frequency"] = config.min_frequency
    if config.lowercase:
        raise UsageError("--like keeps MODEL's normalization: leave --lowercase out or use --kind", "--lowercase")
    tokenizer = base.train_new_from_iterator(batches, config.vocab_size, length=length, **extra)
    tokenizer.model_max_length = config.model_max_length
    return tokenizer


def check_output_dir(config: TokenizerConfig) -> Path:
    out = Path(config.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{str(out)!r} is a file, not a folder", "--output-dir")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not config.overwrite_output_dir:
        raise UsageError(
            f"{str(out)!r} is not empty; pass --overwrite-output-dir to replace a tokenizer", "--output-dir"
        )
    if other := [name for name in held if name not in TOKENIZER_FILES]:
        few = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        raise UsageError(f"{str(out)!r} holds more than a tokenizer ({few}): choose another folder", "--output-dir")
    return out


def train_tokenizer(config: TokenizerConfig, data: DataConfig | None = None):
    """Train a tokenizer on `data`'s texts and write it to `config.output_dir`; returns it (transformers')."""
    from mlm_toolkit.outputs import atomic_dir

    data = data or DataConfig()
    out = check_output_dir(config)
    batches, length = corpus(data)
    log.info(
        "training a %s tokenizer on %s texts of %s",
        config.like or config.kind or "wordpiece",
        f"{length:,}" if length is not None else "the streamed",
        data.dataset,
    )
    if config.like:
        tokenizer = like_model(config, batches, length)
    else:
        backend, trainer = fresh_tokenizer(config)
        backend.train_from_iterator(batches, trainer, length=length)
        tokenizer = as_transformers(backend, config)
    with atomic_dir(out) as partial:
        tokenizer.save_pretrained(partial)
    log.info(
        "wrote %s: %s tokens (mask %s); use it with --tokenizer-name %s",
        out,
        f"{len(tokenizer):,}",
        tokenizer.mask_token,
        out,
    )
    return tokenizer
