"""Evaluation in PyTorch: the token-weighted mean loss over the frozen held-out blocks, as training
measures it, and `pt-mlm evaluate` for a saved model."""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from transformers import AutoModelForMaskedLM

from mlm_toolkit.run import evaluation
from mlm_toolkit.run.metrics import EvalScore, TokenWeightedMean
from mlm_toolkit.run.models import load_weights
from pt_mlm.heads import MaskedTokenLoss
from pt_mlm.loaders import eval_loader


@torch.no_grad()
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
    AcceleratorState._reset_state()  # a Python caller may have trained in this process
    accelerator = Accelerator(cpu=not torch.cuda.is_available() and "LOCAL_RANK" in os.environ)
    model = load_weights(
        lambda: AutoModelForMaskedLM.from_pretrained(resolved.location, **resolved.load_kwargs()),
        resolved.name,
    )
    net, batches = accelerator.prepare(MaskedTokenLoss(model), eval_loader(data.eval_inputs, batch_size))
    return mean_masked_loss(net, batches, accelerator)


def evaluate(config: evaluation.EvalConfig) -> evaluation.Evaluation:
    """The perplexity of a saved model (folder, built-in or cached Hub id) on the held-out blocks."""
    return evaluation.evaluate(config, "pytorch", score)
