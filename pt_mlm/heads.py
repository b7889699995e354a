"""The masked-LM loss, with the vocabulary projection on masked positions only (sparse prediction).

Only ~15% of positions carry a label, yet the stock `...ForMaskedLM.forward` projects every position
onto the vocabulary: for DistilRoBERTa (50k words) that projection is about half of the model's
compute. Gathering the masked hidden states first and projecting only those gives the identical loss
for a fraction of the work. Families whose head we cannot call on its own fall back to the dense path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _head_of(model: nn.Module) -> nn.Module | None:
    """The module mapping hidden states (..., H) to vocabulary logits (..., V), when it is one module."""
    for name in ("lm_head", "cls"):  # RoBERTa/XLM-R/CamemBERT ... and BERT families
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    return None


class MaskedTokenLoss(nn.Module):
    """Wraps a `...ForMaskedLM` and returns the cross-entropy of every masked token.

    forward -> (token_losses (N,), block_index (N,)): train takes the mean, evaluation sums per block.
    The wrapper is what Accelerate prepares, so DDP sees the forward pass it needs for gradient sync.
    """

    def __init__(self, model: nn.Module, sparse: bool = True) -> None:
        super().__init__()
        self.model = model
        # Looked up, not stored: a second reference would register the head's weights twice.
        self.sparse = sparse and _head_of(model) is not None

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        masked_positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        with_correct: bool = False,
        **_: torch.Tensor,
    ):
        # Grouped blocks are always full (group_texts drops the remainder), so they come without an
        # attention mask, which lets SDPA take its fastest kernel; padded examples (--line-by-line) bring
        # theirs. `masked_positions` (flat indices of the labelled tokens) comes from the data loader, so
        # nothing here waits for the device.
        if masked_positions is None:
            masked_positions = (labels.flatten() != -100).nonzero().squeeze(1)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.sparse:
            hidden = self.model.base_model(**inputs).last_hidden_state
            logits = _head_of(self.model)(hidden.flatten(0, 1).index_select(0, masked_positions))
        else:
            logits = self.model(**inputs).logits.flatten(0, 1).index_select(0, masked_positions)
        targets = labels.flatten().index_select(0, masked_positions)
        token_losses = F.cross_entropy(logits.float(), targets, reduction="none")
        rows = torch.div(masked_positions, labels.shape[1], rounding_mode="floor")
        if with_correct:  # evaluation: whether the most likely token is the right one
            return token_losses, rows, logits.argmax(-1) == targets
        return token_losses, rows
