"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the forked child, before exec: ask Linux to send SIGTERM when our parent dies.

    For the embedded Redis and the supervisor's daemon processes: a parent killed with SIGKILL
    cannot stop them itself, and a stray server or worker would hold a port or tasks. The
    kernel ties this to the thread that forked, so children are started from the main thread.
    If the parent died before the call, the child would be orphaned already: it exits instead.
    """
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not fatal: the parent still stops its children on a normal exit
    if os.getppid() != parent:
        os._exit(1)
