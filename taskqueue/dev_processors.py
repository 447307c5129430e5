"""Development mode: processors from an import path, without packaging (``--processors``).

``taskqueue worker --processors mypkg.tasks`` imports the module ``mypkg.tasks`` and loads it
as a plugin beside the installed ones, credited as plugin ``mypkg.tasks``. The one rule: the
module implements the ``taskqueue_register_processors`` hook, exactly as an entry-point
plugin's module does, so shipping it later is adding an entry point and nothing else.

The current directory goes first on the import path (as with ``python -m``), so a module next
to where the worker starts needs no installing. Anything wrong (no such module, an error while
importing it, no hook) is a :class:`ProcessorsImportError` naming the module: a typo must stop
start-up, not leave a worker that runs nothing.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from types import ModuleType
from typing import Final

from taskqueue.errors import ConfigError

__all__ = ["HOOK", "ProcessorsImportError", "import_processors", "is_module_path"]

HOOK: Final = "taskqueue_register_processors"


class ProcessorsImportError(ConfigError):
    """A ``--processors`` (``worker.processors``) module cannot be used; the message says why."""


def is_module_path(text: str) -> bool:
    """``mypkg.tasks`` is a module path; ``mypkg/tasks.py`` and ``.tasks`` are not."""
    return all(part.isidentifier() for part in text.split("."))


def import_processors(path: str) -> ModuleType:
    """The module ``path`` names, checked to implement :data:`HOOK`, ready for
    :func:`~taskqueue.processors.load_plugins`'s ``extra``."""
    where = f"processors module {path!r}"
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (path == exc.name or path.startswith(exc.name + ".")):
            raise ProcessorsImportError(
                f"{where}: no module named {exc.name!r} (looked in the current directory"
                f" {cwd} and on sys.path)"
            ) from None
        raise ProcessorsImportError(f"{where}: importing it failed: {exc}") from exc
    except Exception as exc:
        raise ProcessorsImportError(
            f"{where}: importing it failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(getattr(module, HOOK, None)):
        raise ProcessorsImportError(f"{where} ({_file_of(module)}) {_missing_hook(module)}")
    return module


def _missing_hook(module: ModuleType) -> str:
    message = (
        f"has no {HOOK} hook: define `@hookimpl def {HOOK}(registry)` (hookimpl from"
        " taskqueue.plugin) that calls registry.add(...)"
    )
    close = difflib.get_close_matches(HOOK, [n for n in vars(module) if n != HOOK], n=1)
    return f"{message}; is {close[0]} a misspelling of it?" if close else message


def _file_of(module: ModuleType) -> str:
    return getattr(module, "__file__", None) or "a namespace package"
