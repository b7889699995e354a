"""Tiny RoBERTa and BERT masked LMs built from config, with tokenizers trained in seconds.

Importable from a plain subprocess (no pytest needed), so TensorFlow tests can build them too.
"""

from __future__ import annotations

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
        num_hidden_layers=2,
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
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
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


# Each way a model folder can be unusable, and what the one-line error says of it.
BROKEN_MODELS = [
    ("config without weights", "has a config but no weights"),
    ("truncated weights", "cannot load the weights"),
    ("corrupted weights", "cannot load the weights"),
    ("tokenizer larger than embeddings", "more than the 100 rows of the model's embeddings"),
    ("missing tokenizer", "cannot load the tokenizer"),
]
