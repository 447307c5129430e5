"""Adapting the shipped units to one host: the ``taskqueue`` they start, system or user manager.

The shipped units start ``/opt/taskqueue/bin/taskqueue``; an installed one must start the
``taskqueue`` of the virtual environment it was installed from, or systemd refuses it
(``... is not executable``). A user manager (``systemctl --user``) cannot switch uids or set up
the mount and kernel sandbox without privileges, and has no ``multi-user.target`` or
``network-online.target``: :func:`render_unit` drops what it cannot apply, with the comments
that only explained those settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

__all__ = ["USER_UNSUPPORTED", "render_unit", "systemd_quote"]

#: Settings a user manager cannot apply (they need root, or unprivileged user namespaces).
USER_UNSUPPORTED: Final = frozenset(
    {
        "DynamicUser",
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "PrivateDevices",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RemoveIPC",
        # System units a user manager cannot see or order itself after.
        "Wants",
        "After",
    }
)

_EXEC_START = re.compile(r"^ExecStart=\S*taskqueue(?=\s|$)", re.MULTILINE)
_USER_HEADER = (
    "# A user unit, written by `taskqueue systemd install --user`: the system unit without\n"
    "# the settings a user manager cannot apply (DynamicUser= and the mount and kernel\n"
    "# sandbox). Its directories: $XDG_CONFIG_HOME/taskqueue (config) and\n"
    "# $XDG_STATE_HOME/taskqueue (data; ~/.local/state/taskqueue by default). Start it with\n"
    "# `systemctl --user enable --now <unit>`; `loginctl enable-linger` keeps it running\n"
    "# while you are logged out.\n"
    "#\n"
)


def systemd_quote(word: str) -> str:
    """``word`` as one argument of a unit's command line (quoted if it needs to be)."""
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_unit(text: str, executable: Path, *, user: bool = False) -> str:
    """The unit ``text`` starting ``executable``; for a user manager with ``user``."""
    rendered, count = _EXEC_START.subn(
        lambda _: f"ExecStart={systemd_quote(str(executable))}", text
    )
    if count == 0:
        raise ValueError("the unit has no ExecStart= line starting taskqueue")
    if not user:
        return rendered
    body = _without_unsupported(rendered).replace(
        "WantedBy=multi-user.target", "WantedBy=default.target"
    )
    return _USER_HEADER + body


def _setting(line: str) -> str | None:
    """The setting a line assigns (``ProtectSystem``), or None for comments, blanks and
    section headers."""
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", ";", "[")) or "=" not in stripped:
        return None
    return stripped.split("=", 1)[0].strip()


def _without_unsupported(text: str) -> str:
    """``text`` without :data:`USER_UNSUPPORTED` settings. A comment block goes too when every
    setting right under it (up to the next comment or blank line) went."""
    out: list[str] = []
    comments: list[str] = []
    group: list[str] = []

    def flush() -> None:
        kept = [line for line in group if _setting(line) not in USER_UNSUPPORTED]
        if kept or not group:
            out.extend(comments)
        out.extend(kept)
        comments.clear()
        group.clear()

    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            if group:
                flush()
            comments.append(line)
        elif _setting(line) is not None:
            group.append(line)
        else:  # a blank line or a section header ends the block
            flush()
            out.append(line)
    flush()
    return "".join(out)
