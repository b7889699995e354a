"""The start-up check both frameworks' workaround modules (`pt_mlm.compat`, `tf_mlm.compat`) make: the libraries
are the versions their speed workarounds were written for, or the run goes without them and says so once."""

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
