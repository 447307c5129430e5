"""The response of one gRPC call: headers, messages, then the status, each at most once.

Hypercorn keeps its own state per stream and refuses an ASGI event out of order (a second
``http.response.start``, a body after the trailers) by raising ``UnexpectedMessageError``,
which logs "Error in ASGI Framework" and resets the stream with INTERNAL_ERROR: the client
gets no status at all. So :class:`Response` is the only thing that sends a call's events, and
it moves its :class:`Phase` on *before* it awaits a send. A send that a cancellation
interrupts (the deadline, the client going away, the daemon's shutdown) counts as sent: the
next step never repeats it. That is the whole fix for a deadline that expired while the
headers went out under the send guard, after which the status used to send them again.

The handler's sends are shielded for at most :data:`SEND_GUARD` seconds, because a cancel
that lands while hypercorn holds encoded HTTP/2 headers but has not written them would
desynchronise the connection's HPACK state and break every stream on it. The final sends are
never shielded: a connection that died while hypercorn waited to flush them would leave the
task unkillable (the dispatcher cuts them after its grace period instead).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import trio
from grpclib.const import Status

from taskqueue.api.errors import ApiError
from taskqueue.api.grpc.framing import encode_message, frame

Send = Callable[[Any], Awaitable[None]]

#: How long the handler's own sends are protected from cancellation (see the module docstring).
SEND_GUARD = 10.0
#: Trailer that names the request field an INVALID_ARGUMENT is about.
FIELD_TRAILER = b"taskqueue-field"


@attrs.frozen
class Outcome:
    """How a call ends: its status, a message for the client, and extra trailers."""

    status: Status
    message: str = ""
    trailers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def of(cls, error: ApiError) -> Outcome:
        """The outcome of a known error; a wrong field is named first in the message (as the
        request names it) and alone in the ``taskqueue-field`` trailer."""
        if error.field:
            return cls(
                Status[error.grpc_status],
                f"{error.field}: {error.detail}",
                ((FIELD_TRAILER, error.field.encode()),),
            )
        return cls(Status[error.grpc_status], error.detail)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``grpc-status``, ``grpc-message`` (percent-encoded) and the extra trailers."""
        fields = [(b"grpc-status", b"%d" % self.status.value)]
        if self.message:
            fields.append((b"grpc-message", encode_message(self.message)))
        fields.extend(self.trailers)
        return fields


class Phase(enum.Enum):
    """Where a call's response is; it only ever moves down this list."""

    IDLE = "idle"  # nothing sent
    OPEN = "open"  # the headers went (or are going) out; messages may follow
    ENDED = "ended"  # the status went (or is going) out: nothing more is sent
    ABANDONED = "abandoned"  # the stream closed under the call: nothing can be sent


class ResponseEnded(Exception):
    """A handler tried to send a message after its call's status went out."""


class Response:
    """The one sender of a call's ASGI response events (see the module docstring)."""

    def __init__(self, send: Send, content_type: bytes) -> None:
        self._send = send
        self.content_type = content_type
        self.phase = Phase.IDLE
        #: The status the call ended with (sent, or for an abandoned call, recorded only).
        self.outcome: Outcome | None = None

    @property
    def started(self) -> bool:
        """Whether the response headers have gone (or are going) out."""
        return self.phase is not Phase.IDLE

    async def send_message(self, message: bytes) -> None:
        """Send one serialised message (the handler's side), after the headers if need be.

        Each send is guarded (see the module docstring); a cancellation that waited for it is
        raised afterwards, with the phase already past what was sent.
        """
        if self.phase in (Phase.ENDED, Phase.ABANDONED):
            raise ResponseEnded(f"the response is {self.phase.value}; no more messages")
        if self.phase is Phase.IDLE:
            self.phase = Phase.OPEN
            await self._guarded(self._start())
        body = {"type": "http.response.body", "body": frame(message), "more_body": True}
        await self._guarded(body)
        await trio.lowlevel.checkpoint_if_cancelled()

    async def finish(self, outcome: Outcome) -> None:
        """End the call with ``outcome`` as trailers (headers first if none went yet).

        Only the first end counts: once the response has ended or been abandoned, this sends
        nothing.
        """
        if self.phase in (Phase.ENDED, Phase.ABANDONED):
            return
        started, self.phase, self.outcome = self.started, Phase.ENDED, outcome
        if not started:
            await self._send(self._start())
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        await self._send(
            {"type": "http.response.trailers", "headers": outcome.headers(), "more_trailers": False}
        )

    async def finish_without_trailers(self, outcome: Outcome) -> None:
        """End a call whose request lacks ``te: trailers``: the status goes in the headers."""
        if self.phase is not Phase.IDLE:
            raise RuntimeError("a response without trailers must be the call's only response")
        self.phase, self.outcome = Phase.ENDED, outcome
        await self._send(self._start(outcome.headers(), trailers=False))
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def abandon(self, outcome: Outcome) -> None:
        """The stream closed under the call (client cancel, lost connection): record
        ``outcome`` and send nothing more. A response that already ended keeps its status."""
        if self.phase is not Phase.ENDED:
            self.phase, self.outcome = Phase.ABANDONED, outcome

    async def _guarded(self, event: dict[str, Any]) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + SEND_GUARD):
            await self._send(event)

    def _start(
        self, headers: Iterable[tuple[bytes, bytes]] = (), *, trailers: bool = True
    ) -> dict[str, Any]:
        return {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", self.content_type), *headers],
            "trailers": trailers,
        }
