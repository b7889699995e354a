"""What every benchmarked configuration trains: the same model, data, block size and global batch.

The model is built from config (random weights: throughput does not depend on them) into a folder
with the built-in BERT tokenizer, so nothing is downloaded:
- `small` (CPU): the MiniLM shape, a BERT of 6 layers x 384, 30k vocabulary, 22M parameters;
- `distilroberta` (GPU): DistilRoBERTa's shape, 6 layers x 768, 50,265-word output layer, 82M parameters;
- `distilbert`: DistilBERT's own family and shape, 6 layers x 768, 30k vocabulary, 66M parameters;
- `modernbert`: ModernBERT-base's family and shape, 22 layers x 768 (GLU feed-forward 1152), 50k vocabulary;
- `tiny` (`--smoke`): 2 layers x 64, to check the harness in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The shape (under the generic names the FLOP count reads), the family, and the family's own settings.
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=30522),
    "small": dict(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, vocab_size=30522
    ),
    "distilroberta": dict(
        hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072, vocab_size=50265
    ),
    "distilbert": dict(
        hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072, vocab_size=30522
    ),
    "modernbert": dict(
        hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152, vocab_size=50368
    ),
}
FAMILY = {"distilbert": ("distilbert", dict(hidden_dim=3072)), "modernbert": ("modernbert", {})}


@dataclass
class Workload:
    size: str
    batch_size: int
    block_size: int
    warmup_steps: int
    measured_steps: int
    max_samples: int

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.measured_steps


def build_model_folder(size: str, folder: Path) -> Path:
    """A masked LM of the given shape and family (BERT unless named), random weights, with the built-in tokenizer."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    from mlm_toolkit.config import BUILTIN_MODEL
    from mlm_toolkit.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BUILTIN_MODEL).location)
    family, settings = FAMILY.get(size, ("bert", {}))
    special = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "mask", "cls", "sep")}
    config = AutoConfig.for_model(family, max_position_embeddings=512, **SIZES[size], **settings, **special)
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
