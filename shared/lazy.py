"""Names a package exports but imports only when first used, so importing it loads no framework."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Callable, ContextManager


def load(path: str) -> Any:
    """The object at "package.module:name"."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def lazy_exports(
    package: str, exports: dict[str, str], around: Callable[[], ContextManager[None]] = contextlib.nullcontext
) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) serving each name of `exports` from its "module:name" path.
    The import runs inside `around()`: what must be set before a framework is imported is set at the
    moment the framework is asked for, not when the package is imported."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            with around():
                return load(exports[name])
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def framework_exports(package: str, options: str) -> Callable[[str], Any]:
    """The `__getattr__` of `pt_mlm`/`tf_mlm`: `train`, `MaskFiller`, their options class and `__version__`,
    each imported on first use inside the package's `environment.prepared()`."""
    from importlib.metadata import version

    environment = importlib.import_module(f"{package}.environment")
    serve = lazy_exports(
        package,
        {
            "train": f"{package}.training:train",
            "evaluate": f"{package}.evaluation:evaluate",
            "MaskFiller": f"{package}.infer:MaskFiller",
            options: f"{package}.options:{options}",
        },
        around=environment.prepared,
    )

    def __getattr__(name: str) -> Any:
        return version("mlm-toolkit") if name == "__version__" else serve(name)

    return __getattr__
