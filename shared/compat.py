"""What both frameworks' workaround modules (`pt_mlm.compat`, `tf_mlm.compat`) share: the start-up check that the
libraries are the versions their speed workarounds were written for (or the run goes without them and says so
once), and the one workaround made before either framework is imported (docs/compat.md)."""

from __future__ import annotations

import logging
from importlib.metadata import version

from packaging.specifiers import SpecifierSet

log = logging.getLogger("mlm")


def speed_workarounds(wanted: bool, written_for: dict[str, SpecifierSet]) -> bool:
    """Whether to use the speed workarounds: asked for (--workarounds), and on the versions `written_for`."""
    if not wanted:
        return False
    other = {name: version(name) for name, known in written_for.items() if version(name) not in known}
    if other:
        found = ", ".join(f"{name} {found} (written for {written_for[name]})" for name, found in other.items())
        log.warning("speed workarounds off: %s; --no-workarounds silences this", found)
    return not other


# Set by the CLIs' command group (and to --workarounds by `train`): the trimmed imports are process-wide, so made
# only in a process of ours, never in a Python caller's.
trim_imports = False


def transformers_without_sklearn() -> None:
    """Keep transformers from importing scikit-learn and SciPy's statistics (seconds of every start,
    docs/compat.md): it does whenever they are installed (sentence-transformers brings them), for its GLUE metrics
    and assisted generation, neither of which a masked-LM run uses. Before transformers' models are imported."""
    from transformers.utils import import_utils

    import_utils._sklearn_available = False


def trimmed_imports() -> None:
    """Called by both packages' `prepared()`, in the framework's environment, before its first import."""
    if trim_imports:
        transformers_without_sklearn()
