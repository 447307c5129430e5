"""What a gRPC handler knows about its call beyond the request message.

betterproto's generated handlers take only the request, so the dispatcher sets the call's
context in a context variable before it runs one; ``current_call()`` reads it. Each ASGI request
runs in its own trio task, and a task's context variables are its own, so concurrent calls
never see each other's context.
"""

from __future__ import annotations

import contextvars

import attrs


@attrs.frozen
class CallContext:
    """One gRPC call: its method, its metadata and its deadline."""

    #: The method's path, e.g. ``/taskqueue.v1.TaskQueue/SubmitTask``.
    method: str
    #: Request metadata (HTTP/2 headers, pseudo-headers left out), names in lower case, in
    #: the order received. ``-bin`` values are left base64-encoded.
    metadata: tuple[tuple[str, str], ...] = ()
    #: The deadline from ``grpc-timeout`` on trio's clock, or None for no deadline. The
    #: dispatcher enforces it (the handler is cancelled and the call ends DEADLINE_EXCEEDED);
    #: a handler reads it only to decide how much work is worth starting.
    deadline: float | None = None
    #: The client's address as hypercorn reports it, if known.
    peer: tuple[str, int] | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of metadata ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in self.metadata:
            if key == name:
                return value
        return default


_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar("taskqueue_grpc_call")


def current_call() -> CallContext:
    """The context of the gRPC call being handled; LookupError outside of one."""
    return _current.get()


def set_current_call(call: CallContext) -> contextvars.Token[CallContext]:
    """Make ``call`` current (for the dispatcher); ``reset_current_call`` undoes it."""
    return _current.set(call)


def reset_current_call(token: contextvars.Token[CallContext]) -> None:
    _current.reset(token)
