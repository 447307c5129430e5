"""Puts taskqueue's hypercorn classes in place of hypercorn's own, process-wide.

The classes: the trio connection (:mod:`.hypercorn_tcp`), the HTTP/1.1 protocol
(:mod:`.hypercorn_h11`) and the HTTP/2 protocol (:mod:`.hypercorn_h2`). Hypercorn's trio
worker looks each up by name when a connection opens, so replacing the names in its modules
before the server starts is enough.
"""

from __future__ import annotations

import hypercorn.protocol
import hypercorn.trio.run

from taskqueue.api.patches import check
from taskqueue.api.patches.hypercorn_h2 import ReapingH2Protocol
from taskqueue.api.patches.hypercorn_h11 import CoalescingH11Protocol
from taskqueue.api.patches.hypercorn_tcp import GuardedTCPServer


def installed() -> bool:
    """Whether hypercorn's trio server uses taskqueue's classes."""
    return (
        hypercorn.protocol.H2Protocol is ReapingH2Protocol  # type: ignore[attr-defined]
        and hypercorn.protocol.H11Protocol is CoalescingH11Protocol  # type: ignore[attr-defined]
        and hypercorn.trio.run.TCPServer is GuardedTCPServer  # type: ignore[attr-defined]
    )


def install() -> None:
    """Make hypercorn's trio server use taskqueue's classes (idempotent, process-wide).

    Raises RuntimeError on a release these classes were not written for (see
    :func:`taskqueue.api.patches.check`): their methods override hypercorn internals, and
    running them blind could break in subtle ways.
    """
    if installed():
        return
    check()
    hypercorn.protocol.H2Protocol = ReapingH2Protocol  # type: ignore[attr-defined]
    hypercorn.protocol.H11Protocol = CoalescingH11Protocol  # type: ignore[attr-defined]
    hypercorn.trio.run.TCPServer = GuardedTCPServer  # type: ignore[attr-defined]
