"""Tiny RoBERTa and BERT masked LMs built from config, with tokenizers trained in seconds.

Importable from a plain subprocess (no pytest needed), so TensorFlow tests can build them too.
"""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_roberta(folder: Path, max_positions: int = 128) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(tiny_corpus(), vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                                     model_max_length=max_positions)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=max_positions + 2, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, type_vocab_size=1)
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
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions)
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
            f.write(json.dumps({"q_id": f"q{i}", "title": f"question {i}", "category": "toy",
                                "answers": {"a_id": [f"a{i}0", f"a{i}1"], "text": corpus[2 * i: 2 * i + 2],
                                            "score": [1, 1]}}) + "\n")
    return path
