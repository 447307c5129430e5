"""Put together a script from the shared definitions it uses, and only those.

Redis runs a script's whole text on every call: each ``local K_... = P .. '...'`` of the key
prelude builds a string, each ``local function`` of ``_lib.lua`` a closure, each table a table,
whether the script needs them or not. For a one-task submit that was about 13 µs of the ~75
Redis spent on the script. So instead of prepending the whole library, :func:`link` keeps the
top-level definitions the script names, and those they name in turn, in their original order.

The library's shape is what makes this safe to do by reading names: every top-level statement
of the shared text is a definition (``local NAME ...``, ``local function NAME``, or a forward
declared ``NAME = function``), starting at column 0, with its body indented or closed by
``end``/``}``/``)`` at column 0. Anything else at column 0 is refused, so an edit that adds a
statement the linker would not understand fails at load time (and in every test), not in Redis.
A definition kept that is not needed costs a little time; one dropped that is needed would fail
the script, which is why references are read from the code with comments and strings removed
only where that cannot hide a name.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["Definition", "link", "parse_definitions"]

_NAME = r"[A-Za-z_]\w*"
_LOCAL_FUNCTION = re.compile(rf"local\s+function\s+({_NAME})")
_LOCAL = re.compile(rf"local\s+({_NAME}(?:\s*,\s*{_NAME})*)")
_ASSIGNED_FUNCTION = re.compile(rf"({_NAME})\s*=\s*function\b")
_CLOSERS = ("end", "}", ")")
_IDENTIFIER = re.compile(_NAME)


@attrs.frozen
class Definition:
    """One top-level definition of the shared text: the names it binds, its text (with the
    comment lines just above it), and the names its code refers to."""

    names: frozenset[str]
    text: str
    refers_to: frozenset[str]


def _bound_names(line: str) -> frozenset[str] | None:
    """The names a column-0 line binds, or None when it binds none."""
    if match := _LOCAL_FUNCTION.match(line):
        return frozenset({match[1]})
    if match := _ASSIGNED_FUNCTION.match(line):
        return frozenset({match[1]})
    if match := _LOCAL.match(line):
        return frozenset(name.strip() for name in match[1].split(","))
    return None


def _code_only(text: str) -> str:
    """``text`` with ``--`` comments removed and string literals blanked, so that the words of
    a comment or a string do not count as references (they would only keep more than needed,
    never less, but the point is to keep little)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "'\"":
            end = i + 1
            while end < n and text[end] != char and text[end] != "\n":
                end += 2 if text[end] == "\\" else 1
            out.append(" ")
            i = end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def references(text: str) -> frozenset[str]:
    """The identifiers the code of ``text`` uses."""
    return frozenset(_IDENTIFIER.findall(_code_only(text)))


def parse_definitions(shared: str) -> list[Definition]:
    """Split the shared text into its top-level definitions, in order."""
    chunks: list[tuple[frozenset[str], list[str]]] = []
    pending: list[str] = []  # blank and comment lines: they go with the line after them
    for line in shared.splitlines(keepends=True):
        if not line.strip() or line.startswith("--"):
            pending.append(line)
            continue
        if line[0].isspace() or line.startswith(_CLOSERS):
            if not chunks:
                raise ValueError(f"shared Lua starts with a line outside a definition: {line!r}")
            chunks[-1][1].extend([*pending, line])
        else:
            names = _bound_names(line)
            if names is None:
                raise ValueError(
                    "a top-level statement of the shared Lua must be a definition (local NAME,"
                    f" local function NAME, NAME = function): {line!r}"
                )
            chunks.append((names, [*pending, line]))
        pending = []
    if chunks:
        chunks[-1][1].extend(pending)
    return [
        Definition(names, "".join(lines), references("".join(lines)) - names)
        for names, lines in chunks
    ]


def link(definitions: list[Definition], script: str) -> str:
    """``script`` preceded by the definitions it uses, directly or through other definitions,
    in the order they were defined."""
    by_name: dict[str, list[int]] = {}
    for index, definition in enumerate(definitions):
        for name in definition.names:
            by_name.setdefault(name, []).append(index)
    kept: set[int] = set()
    wanted = list(references(script))
    while wanted:
        for index in by_name.get(wanted.pop(), ()):
            if index not in kept:
                kept.add(index)
                wanted.extend(definitions[index].refers_to)
    return "".join(definitions[i].text for i in sorted(kept)) + script
