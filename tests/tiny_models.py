"""Tiny RoBERTa and BERT masked LMs built from config, with tokenizers trained in seconds.

Importable from a plain subprocess (no pytest needed), so TensorFlow tests can build them too.
"""

from __future__ import annotations

import inspect
from pathlib import Path

# The tiny fixtures' block size, rate and batches: seconds per run on 2 cores.
TINY_ARGS = [
    "--block-size",
    "32",
    "--learning-rate",
    "1e-3",
    "--per-device-batch-size",
    "8",
    "--eval-batch-size",
    "32",
]


def train_command(model, dataset, out, *more) -> list[str]:
    """`train MODEL on DATASET into OUT` with the tiny sizes, then `more` (which may override them)."""
    args = ("train", "--model", model, "--dataset", dataset, "--output-dir", out, *TINY_ARGS, *more)
    return [str(a) for a in args]


# A few hundred sentences with repeated structure: enough for a tokenizer and for loss to fall.
_SUBJECTS = ["the cat", "a dog", "the bird", "my friend", "the teacher", "a child", "the farmer", "our team"]
_VERBS = ["sees", "likes", "finds", "helps", "follows", "calls", "draws", "reads"]
_OBJECTS = ["the ball", "a book", "the river", "a red car", "the old house", "a green tree", "the moon", "a song"]


def tiny_corpus(n: int = 600) -> list[str]:
    out = []
    for i in range(n):
        s, v, o = _SUBJECTS[i % 8], _VERBS[(i // 8) % 8], _OBJECTS[(i // 64 + i) % 8]
        out.append(f"{s} {v} {o} because {s} is happy. then {s} {v} {o} again.")
    return out


def not_utf8(data: Path, work: Path) -> Path:
    """A copy of the jsonl `data` whose third line holds a byte that is not UTF-8."""
    lines = data.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"the", b"th\xff", 1)
    bad = work / "not-utf8.jsonl"
    bad.write_bytes(b"".join(lines))
    return bad


def build_tiny_roberta(folder: Path, max_positions: int = 128) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        tiny_corpus(), vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), model_max_length=max_positions
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,  # a layer's class repeats: one shows it, and tracing a TF step costs per layer
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    import torch

    torch.manual_seed(0)
    RobertaForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_bert(folder: Path, max_positions: int = 128) -> Path:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(tiny_corpus(), vocab_size=200, min_frequency=1)
    wordpiece.save_model(str(folder))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=max_positions)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,  # a layer's class repeats: one shows it, and tracing a TF step costs per layer
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# The model matrix: a tiny config of each masked-LM family, its size settings under each family's own names.
_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
_ROBERTA_POSITIONS = dict(max_position_embeddings=130)  # positions start after the padding index
FAMILIES = {
    "albert": dict(embedding_size=16),
    "bert": {},
    "big_bird": dict(attention_type="original_full"),  # block-sparse attention needs longer blocks
    "camembert": _ROBERTA_POSITIONS,
    "convbert": dict(embedding_size=32),
    "deberta": {},
    "deberta-v2": {},
    "distilbert": {},
    "electra": dict(embedding_size=32),
    "ernie": {},
    "esm": {},
    "flaubert": dict(emb_dim=32, n_layers=2, n_heads=2),
    "fnet": {},
    "funnel": dict(block_sizes=[1, 1], num_decoder_layers=1, d_model=32, n_head=2, d_head=16, d_inner=64),
    "longformer": dict(attention_window=[8, 8], **_ROBERTA_POSITIONS),
    "mobilebert": dict(embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16, num_feedforward_networks=1),
    "modernbert": dict(global_attn_every_n_layers=2, local_attention=16),
    "mpnet": _ROBERTA_POSITIONS,
    "roberta": _ROBERTA_POSITIONS,
    "roformer": dict(embedding_size=32),
    "xlm": dict(emb_dim=32, n_layers=2, n_heads=2),
    "xlm-roberta": _ROBERTA_POSITIONS,
}


def build_tiny_family(model_type: str, folder: Path, tokenizer_folder: Path, **overrides) -> Path:
    """A tiny `model_type` masked LM from config with the tokenizer of `tokenizer_folder`, saved in `folder`;
    `overrides`: config settings over the family's tiny ones."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    special = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "mask", "cls", "sep")}
    special.update(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    small = {k: v for k, v in _SMALL.items() if not (model_type == "funnel" and k == "num_hidden_layers")}
    settings = {**small, "max_position_embeddings": 128, "vocab_size": len(tokenizer), **special}
    config = AutoConfig.for_model(model_type, **{**settings, **FAMILIES[model_type], **overrides})
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config)
    model.save_pretrained(folder)
    # The inputs the family takes, as its own tokenizer gives them (DistilBERT: no token_type_ids).
    takes = inspect.signature(model.forward).parameters
    names = [name for name in tokenizer.model_input_names if name in takes]
    AutoTokenizer.from_pretrained(tokenizer_folder, model_input_names=names).save_pretrained(folder)
    return folder


def write_eli5_jsonl(path: Path, rows: int = 200) -> Path:
    """An ELI5-shaped jsonl (nested answers.text lists) from the tiny corpus."""
    import json

    corpus = tiny_corpus(rows * 2)
    with path.open("w") as f:
        for i in range(rows):
            f.write(
                json.dumps(
                    {
                        "q_id": f"q{i}",
                        "title": f"question {i}",
                        "category": "toy",
                        "answers": {"a_id": [f"a{i}0", f"a{i}1"], "text": corpus[2 * i : 2 * i + 2], "score": [1, 1]},
                    }
                )
                + "\n"
            )
    return path


def broken_copy(tiny_roberta: Path, tmp_path: Path, how: str) -> Path:
    """A copy of a model folder made unusable in one way (`how`), for the bad-model tests of both paths."""
    import json
    import shutil

    folder = tmp_path / how.replace(" ", "-")
    shutil.copytree(tiny_roberta, folder)
    if how == "config without weights":
        (folder / "model.safetensors").unlink()
    elif how == "truncated weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    elif how == "corrupted weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(b"\x00garbage" + weights.read_bytes()[9:])
    elif how == "tokenizer larger than embeddings":
        config = json.loads((folder / "config.json").read_text())
        config["vocab_size"] = 100
        (folder / "config.json").write_text(json.dumps(config))
    elif how == "missing tokenizer":
        for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


def non_finite_copy(model: Path, work: Path) -> Path:
    """A copy of a model folder with one NaN weight, as a diverged run would leave (no framework needed)."""
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    folder = work / "non-finite"
    shutil.copytree(model, folder)
    weights = load_file(folder / "model.safetensors")
    name = next(name for name, tensor in weights.items() if tensor.ndim == 2 and "embeddings" not in name)
    weights[name][0, 0] = np.nan
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


# Each way a model folder can be unusable, and what the one-line error says of it.
BROKEN_MODELS = [
    ("config without weights", "has a config but no weights"),
    ("truncated weights", "cannot load the weights"),
    ("corrupted weights", "cannot load the weights"),
    ("tokenizer larger than embeddings", "more than the 100 rows of the model's embeddings"),
    ("missing tokenizer", "cannot load the tokenizer"),
]
