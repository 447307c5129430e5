"""Large messages are decoded, built and encoded in a worker thread, never on the event loop.

betterproto is pure Python: decoding a 1,000-task ``SubmitTasks`` takes ~0.1 s, building and
encoding a 1,000-task ``ListTasks`` page ~0.3 s on an idle machine, several times that on a
loaded one. On the loop, that time is the heartbeat's too: a few such calls in one scheduling
batch cost the worker beside the API its leases. In a thread, the interpreter's switch
interval (5 ms) hands the loop its turn between the thread's bytecodes. Small messages stay on
the loop, where a thread's hop would cost more than the work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import betterproto
import trio

T = TypeVar("T")

#: Request messages larger than this are decoded in a worker thread (16 KiB decode in ~1 ms).
INLINE_DECODE_BYTES = 16 * 2**10
#: Responses with more entries than this, in their repeated fields, are built and encoded in
#: a worker thread (a page of 100 tasks takes ~30 ms on an idle machine).
INLINE_ENTRIES = 100
#: Worker threads at this work at once: betterproto holds the GIL, so more would not go faster.
THREADS = 2

_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("grpc_offload")


async def decode(decoder: Callable[..., T], message: bytes, *args: Any) -> T:
    """``decoder(message, *args)``, in a worker thread for a message over
    :data:`INLINE_DECODE_BYTES`."""
    return await run(decoder, message, *args, large=len(message) > INLINE_DECODE_BYTES)


async def build(make: Callable[..., T], items: Sequence[Any], *args: Any) -> T:
    """``make(items, *args)``, the response of a page, in a worker thread for a page of more
    than :data:`INLINE_ENTRIES` items."""
    return await run(make, items, *args, large=len(items) > INLINE_ENTRIES)


async def encode(message: betterproto.Message) -> bytes:
    """``message``'s bytes, encoded in a worker thread when it holds more than
    :data:`INLINE_ENTRIES` entries."""
    return await run(bytes, message, large=entries(message) > INLINE_ENTRIES)


async def run(work: Callable[..., T], *args: Any, large: bool) -> T:
    """``work(*args)``: on the loop when not ``large``, else in a worker thread (at most
    :data:`THREADS` at once in this trio run)."""
    if not large:
        return work(*args)
    return await trio.to_thread.run_sync(work, *args, limiter=_run_limiter())


def entries(message: betterproto.Message) -> int:
    """How many entries ``message``'s top-level repeated fields hold: its size, cheaply."""
    count = 0
    for field in dataclasses.fields(message):  # type: ignore[arg-type]  # a dataclass
        value = getattr(message, field.name)
        if isinstance(value, list):
            count += len(value)
    return count


def _run_limiter() -> trio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(THREADS)
        _limiter.set(limiter)
        return limiter
