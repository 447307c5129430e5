"""What a deployment installs, shipped inside the package so a wheel has it too: the systemd
units (``units/``) and the annotated example configuration (``taskqueue.toml``).

In the repository these files are links to ``systemd/`` and ``config/taskqueue.toml``, which
stay where people look for them; ``taskqueue systemd install`` (:mod:`taskqueue.cli.systemd`)
reads them from here and adapts them with :mod:`taskqueue.deploy.units`.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

__all__ = ["EXAMPLE_CONFIG", "UNIT_NAMES", "example_config", "unit_text"]

#: The units ``taskqueue systemd install`` writes, in that order.
UNIT_NAMES: Final = ("taskqueue.service", "taskqueue-worker@.service")
#: The example configuration's file name (the one the daemon looks for in
#: ``$CONFIGURATION_DIRECTORY``).
EXAMPLE_CONFIG: Final = "taskqueue.toml"


def unit_text(name: str) -> str:
    """The shipped unit ``name`` (one of :data:`UNIT_NAMES`), as written in ``systemd/``."""
    if name not in UNIT_NAMES:
        raise ValueError(f"no unit {name!r}; expected one of {', '.join(UNIT_NAMES)}")
    return files(__name__).joinpath("units", name).read_text(encoding="utf-8")


def example_config() -> str:
    """``config/taskqueue.toml``: every key with its default and what it does."""
    return files(__name__).joinpath(EXAMPLE_CONFIG).read_text(encoding="utf-8")
