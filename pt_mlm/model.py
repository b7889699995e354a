"""The model pt-mlm trains and scores: `load_masked_lm`, `MaskedTokenLoss` (the sparse head: the model's own
head on the masked rows only, checked against the full head at load time), and the token-weighted eval loss.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from transformers import AutoModelForMaskedLM

from mlm_toolkit.metrics import EvalScore, TokenWeightedMean
from mlm_toolkit.models import first_line, load_weights
from pt_mlm.compat import fresh_accelerator_state
from pt_mlm.loaders import eval_loader, with_masked_positions

if TYPE_CHECKING:
    from mlm_toolkit.config import EvalConfig
    from mlm_toolkit.evaluation import ModelEvaluation


class MaskedTokenLoss(nn.Module):
    """A `...ForMaskedLM` returning the cross-entropy of each masked token: (token_losses, block_index).

    Only ~15% of positions carry a label, yet the stock forward projects all of them onto the vocabulary (for
    DistilRoBERTa about half its compute). With the sparse head, the encoder's output is cut to the masked
    rows before the model's own head runs on them: the same loss, for any family whose head maps each position
    on its own. `probe` (a batch) checks that on this model; without one, or where it fails, the head is dense.
    """

    def __init__(self, model: nn.Module, probe: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        self.rows: torch.Tensor | None = None  # while set, the encoder's output is cut to these flat positions
        model.base_model.register_forward_hook(self._keep_rows)
        self.sparse, self.dense_reason = False, "--no-sparse-head" if probe is None else None
        if probe is not None:
            self.dense_reason = self._sparse_head_differs(probe)
            self.sparse = self.dense_reason is None

    def _keep_rows(self, module, args, output):
        if self.rows is None:
            return output
        first = output[0].flatten(0, 1).index_select(0, self.rows)[None]  # (1, rows, hidden): one "sequence"
        if isinstance(output, tuple):
            return (first, *output[1:])
        output[next(iter(output.keys()))] = first
        return output

    @torch.no_grad()
    def _sparse_head_differs(self, probe: dict[str, torch.Tensor]) -> str | None:
        """Why the masked rows alone do not give the full forward's logits at those rows (None: they do)."""
        training = self.model.training
        self.model.eval()
        try:
            batch = with_masked_positions(probe)
            dense = self.logits(batch["input_ids"], batch["masked_positions"], batch.get("attention_mask"), False)
            sparse = self.logits(batch["input_ids"], batch["masked_positions"], batch.get("attention_mask"), True)
        except Exception as error:  # a family's forward may reject the cut shape in its own way
            return f"its head fails on the masked rows alone ({type(error).__name__}: {first_line(error)})"
        finally:
            self.model.train(training)
        if sparse.shape != dense.shape or not torch.allclose(sparse, dense, rtol=1e-4, atol=1e-5):
            return "its head does not map each position on its own"
        return None

    def logits(self, input_ids, masked_positions, attention_mask, sparse: bool) -> torch.Tensor:
        """The model's logits at the flat `masked_positions`, (rows, vocabulary)."""
        inputs = {"input_ids": input_ids}
        if attention_mask is not None:  # full blocks come without (SDPA's fastest kernel); FNet takes none
            inputs["attention_mask"] = attention_mask
        self.rows = masked_positions if sparse else None
        try:
            logits = self.model(**inputs).logits
        finally:
            self.rows = None
        return logits.flatten(0, 1) if sparse else logits.flatten(0, 1).index_select(0, masked_positions)

    def forward(self, input_ids, labels, masked_positions=None, attention_mask=None, with_correct=False, **_):
        # `masked_positions` comes from the data loader, so nothing here waits for the device.
        if masked_positions is None:
            masked_positions = (labels.flatten() != -100).nonzero().squeeze(1)
        logits = self.logits(input_ids, masked_positions, attention_mask, self.sparse)
        targets = labels.flatten().index_select(0, masked_positions)
        token_losses = F.cross_entropy(logits.float(), targets, reduction="none")
        rows = torch.div(masked_positions, labels.shape[1], rounding_mode="floor")
        if with_correct:  # evaluation: whether the most likely token is the right one
            return token_losses, rows, logits.argmax(-1) == targets
        return token_losses, rows


def load_masked_lm(resolved, attention: str | None = None, dtype: str | None = None):
    """(model, loading info): `AutoModelForMaskedLM.from_pretrained`, with the attention kernel transformers
    picks for the family (SDPA where it has one, else eager) unless --attention names one, in `dtype`
    (--torch-dtype) if given."""
    kwargs = {"output_loading_info": True, **resolved.load_kwargs()}
    if attention is not None:
        kwargs["attn_implementation"] = attention
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    return load_weights(lambda: AutoModelForMaskedLM.from_pretrained(resolved.location, **kwargs), resolved.name)


@torch.no_grad()  # nothing to differentiate: no graph, no saved activations
def mean_masked_loss(net: torch.nn.Module, batches, accelerator: Accelerator) -> EvalScore:
    """Token-weighted mean cross-entropy and accuracy over every masked token of the frozen eval set."""
    training = net.training
    net.eval()
    mean = TokenWeightedMean()
    for batch in batches:
        token_losses, rows, correct = net(**batch, with_correct=True)
        # Per-block sums, so gather_for_metrics can drop the blocks padded in to even out processes.
        per_block = torch.zeros(3, len(batch["labels"]), device=token_losses.device)
        for n, values in enumerate((token_losses, torch.ones_like(token_losses), correct.float())):
            per_block[n].index_add_(0, rows, values)
        sums, counts, right = accelerator.gather_for_metrics(per_block.T.contiguous()).sum(0).tolist()
        mean.add(sums / max(counts, 1), int(counts), int(right))
    net.train(training)
    return mean.score


def score(resolved, tokenizer, data, batch_size: int) -> EvalScore:
    """The eval loss of the model `resolved` names on `data`'s frozen held-out inputs."""
    fresh_accelerator_state()  # a Python caller may have trained in this process
    accelerator = Accelerator(cpu=not torch.cuda.is_available() and "LOCAL_RANK" in os.environ)
    model, _ = load_masked_lm(resolved)
    probe = {key: torch.from_numpy(value[:2].astype(np.int64)) for key, value in data.eval_inputs.items()}
    net, batches = accelerator.prepare(MaskedTokenLoss(model, probe), eval_loader(data.eval_inputs, batch_size))
    return mean_masked_loss(net, batches, accelerator)


def evaluate(config: EvalConfig) -> ModelEvaluation:
    """The perplexity of a saved model (folder, built-in or cached Hub id) on the held-out blocks."""
    from mlm_toolkit.evaluation import evaluate

    return evaluate(config, "pytorch", score)


def no_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: biases and LayerNorm weights are not decayed (as BERT and the HF examples do)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
