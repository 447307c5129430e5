"""Turning a server's failure to listen into one line that names the address and the fix."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from taskqueue.errors import ListenError

_HINTS = {
    errno.EADDRINUSE: "another process listens there: stop it or choose another port",
    errno.EACCES: "not allowed: ports below 1024 need privileges (or CAP_NET_BIND_SERVICE)",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address",
}


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError at the root of ``exc`` (a nursery wraps it in exception groups)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _os_error(inner)) is not None:
                return found
        return None
    return exc if isinstance(exc, OSError) else None


@contextlib.contextmanager
def listen_errors(address: str, settings: str) -> Iterator[None]:
    """Raise :class:`ListenError` for an OSError while starting to listen on ``address``
    (configured by ``settings``); anything else passes through unchanged."""
    try:
        yield
    except (OSError, BaseExceptionGroup) as exc:
        error = _os_error(exc)
        if error is None or isinstance(error, ListenError):
            raise
        hint = _HINTS.get(error.errno or 0, f"check {settings}")
        reason = error.strerror or str(error)
        raise ListenError(f"cannot listen on {address}: {reason}; {hint} ({settings})") from None
