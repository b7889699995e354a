"""`pt_mlm.MaskFiller`: load a trained folder and fill masks from Python in two lines.

from pt_mlm import MaskFiller
MaskFiller("runs/minilm")("The Milky Way is a <mask> galaxy.", top_k=3)
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from transformers import AutoModelForMaskedLM

from mlm_toolkit.fill_mask import MaskFillerBase
from mlm_toolkit.models import load_checked, load_weights, max_block_size, resolve_model


class MaskFiller(MaskFillerBase):
    """The guide's manual top-k over the logits at each mask position, in PyTorch."""

    def __init__(self, model: str, device: str | None = None) -> None:
        resolved = resolve_model(model)
        config, tokenizer = load_checked(resolved, block_size=1)  # an unusable folder is one clear line
        super().__init__(tokenizer, max_block_size(config, tokenizer))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_weights(
            lambda: AutoModelForMaskedLM.from_pretrained(resolved.location, **resolved.load_kwargs()), model
        )
        self.model.to(self.device).eval()

    @torch.no_grad()
    def _top_k(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, k: int, candidates: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, inputs = torch.from_numpy(input_ids).to(self.device), {}
        if "attention_mask" in inspect.signature(self.model.forward).parameters:  # FNet takes none
            inputs["attention_mask"] = torch.from_numpy(attention_mask).to(self.device)
        logits = self.model(input_ids=ids, **inputs).logits
        mask_logits = logits[ids == self.tokenizer.mask_token_id].float()  # (masks, vocab), row-major order
        probs = mask_logits.softmax(dim=-1)
        if candidates is not None:
            probs = probs[:, torch.from_numpy(candidates).to(self.device)]
        top = torch.topk(probs, k, dim=-1)
        tokens = top.indices.cpu().numpy()
        return top.values.cpu().numpy(), tokens if candidates is None else candidates[tokens]
