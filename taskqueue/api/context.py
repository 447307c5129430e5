"""What the API is given by the process that serves it, and nothing more.

The API does not know the daemon: it reads and writes tasks through the broker, answers the
probes from :class:`~taskqueue.health.Health`, renders the process's metrics, and stops
streaming when ``shutdown`` is set. So an API-only process, a full daemon and a test serve it
alike, and nothing under ``taskqueue.api`` depends on how the daemon is put together.
"""

from __future__ import annotations

import attrs
import trio

from taskqueue.broker import Broker
from taskqueue.config import ServerConfig
from taskqueue.health import Health
from taskqueue.metrics import Metrics


@attrs.frozen(kw_only=True)
class ApiContext:
    broker: Broker
    health: Health
    #: Set when the process begins to stop: watch streams end and the server closes.
    shutdown: trio.Event
    server: ServerConfig
    metrics: Metrics
    #: The path ``/metrics`` is served at on the API port; None when it is not served there
    #: (metrics off, or on a port of their own).
    metrics_path: str | None = None
    #: Whether ``metrics_path`` answers without a token (``metrics.public``).
    metrics_public: bool = False
