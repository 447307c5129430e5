"""Which environment variables a task's payload may set, and the environment it runs with.

A payload may set only the names the operator lists in ``[plugins.shell] allowed_env`` (by
default none). Names the dynamic loader, the C library or a shell read at start-up are refused
always, listed or not: with an allowlisted shell script they run code of the payload's choosing
before the script's first line (``BASH_ENV=/dev/stdin`` plus stdin, ``BASH_FUNC_echo%%=() {
...}``), or change which code runs (``LD_PRELOAD``, ``PATH``). Names must also be portable
(``[A-Za-z_][A-Za-z0-9_]*``), which keeps out bash's exported functions (``BASH_FUNC_x%%``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

#: The environment every command starts from; nothing is inherited from the daemon.
BASE_ENV: Mapping[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

#: Prefixes of names refused always: the dynamic loader (glibc, macOS), exported bash functions.
REFUSED_PREFIXES: Final = ("LD_", "DYLD_", "BASH_FUNC_", "GLIBC_")
#: Names refused always: where programs are found, what shells run or parse at start-up
#: (sh, bash, dash, zsh, ksh), and what makes the C library load other code or data.
REFUSED_NAMES: Final = frozenset(
    {
        "PATH",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "IFS",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PROMPT_COMMAND",
        "CDPATH",
        "GLOBIGNORE",
        "BASH_XTRACEFD",
        "BASH_LOADABLES_PATH",
        "EXECIGNORE",
        "ZDOTDIR",
        "FPATH",
        "INPUTRC",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "MALLOC_CHECK_",
        "MALLOC_TRACE",
    }
)
_PORTABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def refusal(name: str) -> str | None:
    """Why no task may ever set ``name``, or None when an operator may allow it."""
    if not _PORTABLE.fullmatch(name):
        return f"{name!r} is not a portable variable name ([A-Za-z_][A-Za-z0-9_]*)"
    if name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES):
        return (
            f"{name} cannot be set by a task (the loader or a shell reads it, so it changes"
            " which code runs); an operator can set it in [plugins.shell] env"
        )
    return None


def unlisted(names: Iterable[str], allowed: frozenset[str]) -> list[str]:
    """The ``names`` a payload sets that ``[plugins.shell] allowed_env`` does not list."""
    return sorted(name for name in names if name not in allowed)


def environment(operator: Mapping[str, str], payload: Mapping[str, str]) -> dict[str, str]:
    """:data:`BASE_ENV`, then the operator's ``env``, then the payload's (already checked)."""
    return {**BASE_ENV, **operator, **payload}
