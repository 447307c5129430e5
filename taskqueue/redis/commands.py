"""Which commands cannot share a pipelined connection with other callers' commands."""

from __future__ import annotations

from collections.abc import Iterable

from taskqueue.redis.connection import Command

#: Commands that hold the connection until something happens (everything queued behind them
#: would wait too), or that change its state for whoever comes next.
_OWN_CONNECTION = frozenset(
    {
        # blocking
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "WAIT", "WAITAOF",
        # connection state
        "AUTH", "HELLO", "SELECT", "RESET", "QUIT", "CLIENT", "READONLY", "READWRITE",
        "WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR",
    }
)  # fmt: skip

#: Commands that block only when asked to, with a ``BLOCK`` argument.
_BLOCK_OPTION = frozenset({"XREAD", "XREADGROUP"})


def needs_own_connection(command: Command) -> bool:
    """Whether ``command`` must run on a connection of its own rather than a shared one.

    ``CLIENT`` is among them for its subcommands that change the connection (``CLIENT REPLY
    OFF``, ``CLIENT SETNAME``) and those whose answer is about it (``CLIENT ID``).
    """
    name = command[0]
    name = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if name in _OWN_CONNECTION:
        return True
    return name in _BLOCK_OPTION and any(_is_block(arg) for arg in command[1:])


def any_needs_own_connection(commands: Iterable[Command]) -> bool:
    return any(needs_own_connection(c) for c in commands)


def _is_block(arg: object) -> bool:
    return isinstance(arg, str | bytes) and arg.upper() in ("BLOCK", b"BLOCK")
