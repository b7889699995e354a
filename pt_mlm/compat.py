"""Every place pt-mlm reaches past PyTorch's, Accelerate's or glibc's public surface, with why (docs/compat.md).

Speed (off with --no-workarounds, and when the libraries are not the versions these were written for):
- `OneDNNLinear`: the encoder's float32 products on oneDNN, where PyTorch sends them to MKL, which runs AMD
  CPUs more slowly; it pays on AVX-512 CPUs only (`onednn_pays`, measured in docs/compat.md).
- `keep_freed_memory`: glibc keeps freed memory for the next step instead of handing it to the kernel and
  faulting it back in; process-wide, so only the CLI's own process (or a caller who asks) sets it.
Needed to work at all:
- `fresh_accelerator_state`: a second run in one process (a notebook, the tests) may ask for another precision.
- tensorboard kept from importing TensorFlow into a PyTorch process (`mlm_toolkit.trackers`).
"""

from __future__ import annotations

import ctypes

import torch
from packaging.specifiers import SpecifierSet
from torch import nn

import mlm_toolkit.compat

# The versions the speed workarounds were written and measured for; outside them, the libraries as shipped.
WRITTEN_FOR = {"torch": SpecifierSet(">=2.4,<2.14")}


def speed_workarounds(wanted: bool) -> bool:
    return mlm_toolkit.compat.speed_workarounds(wanted, WRITTEN_FOR)


def fresh_accelerator_state() -> None:
    """Forget the previous run's Accelerate state (precision, accumulation); the process group is kept."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


def onednn_pays() -> bool:
    """oneDNN's float32 products beat MKL's on the AVX-512 EPYC the swap was measured on and lose on an
    AVX2-only one (docs/fidelity-and-speed.md); PyTorch must also have oneDNN's product op."""
    capable = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return capable and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class OneDNNLinear(nn.Linear):
    """nn.Linear with its float32 products on oneDNN (the op Inductor's CPU code calls): the same products,
    summed in another order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The product of 2-D rows, reshaped outside the autograd Function: a view made inside one cannot be
        # modified in place (Longformer scales its queries in place).
        rows = _OneDNNProduct.apply(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return rows.view(*x.shape[:-1], rows.shape[-1])


class _OneDNNProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        (x, weight), product = ctx.saved_tensors, torch.ops.mkldnn._linear_pointwise  # a @ b.T, views read in place
        grad_x = product(grad, weight.t(), None, "none", [], "")
        grad_weight = product(grad.t(), x.t(), None, "none", [], "")
        return grad_x, grad_weight, grad.sum(0) if ctx.has_bias else None


def onednn_linears(model: nn.Module) -> None:
    """Make the float32 nn.Linear layers OneDNNLinear in place (same weights and names). For an encoder on whole
    blocks only: oneDNN keeps memory for each shape it meets, and the sparse head's row count changes every step."""
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.dtype == torch.float32:
            module.__class__ = OneDNNLinear


def keep_freed_memory() -> None:
    """Large blocks from glibc's heap, never mmap, and the heap's free top never trimmed: otherwise each CPU step
    touches its largest tensors in fresh pages, and the page faults cost a share of the step. A no-op off glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(-4, 0)  # M_MMAP_MAX
        mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD
