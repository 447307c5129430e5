"""Tracing with OpenTelemetry, when it is installed (``pip install taskqueue[otel]``).

Two seams, both chosen once at import:

- :func:`sending` wraps a submit (the clients', REST's and gRPC's): a producer span, whose
  W3C trace context (``traceparent``, ``tracestate``) goes into each task's headers. REST and
  gRPC pass the request's headers, so a caller's trace continues through the API.
- :data:`processing` wraps each attempt in the worker: a consumer span, the child of the
  producer's span on the first attempt, a new trace linked back to it on a retry, following
  OpenTelemetry's messaging conventions.

Without OpenTelemetry nothing here imports it: :func:`sending` hands the submissions back
unchanged and :data:`processing` is None, so the worker's hot path does no work for it.
Until the application sets a tracer provider (with only the API installed, say), no span is
made either, since it would record nothing: a request's trace context passes into the task's
headers as it came, and attempts run as they do without OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from importlib.util import find_spec

from taskqueue.models import ClaimedTask, Submission
from taskqueue.outcomes import Outcome

__all__ = ["Incoming", "Sending", "enabled", "processing", "sending"]

#: Reads one header of an incoming request by its lowercase name (None if it has none).
Incoming = Callable[[str], str | None]
#: :func:`sending`'s signature: the submissions, and the request's headers if any.
Sending = Callable[
    [Sequence[Submission], Incoming | None], AbstractContextManager[Sequence[Submission]]
]
#: :data:`processing`'s signature: the claimed task and the worker's id, to a context
#: manager whose value records the attempt's outcome on its span.
Processing = Callable[[ClaimedTask, str], AbstractContextManager[Callable[[Outcome], None]]]

sending: Sending
processing: Processing | None

# find_spec of a top-level name imports nothing (opentelemetry is a namespace package).
if find_spec("opentelemetry") is not None:
    try:
        from taskqueue.tracing._otel import processing, sending
    except ImportError:  # some opentelemetry distribution, but not its API
        from taskqueue.tracing._off import sending

        processing = None
else:
    from taskqueue.tracing._off import sending

    processing = None

#: Whether submits and attempts are traced (OpenTelemetry's API is installed).
enabled: bool = processing is not None
