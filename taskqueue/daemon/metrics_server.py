"""The metrics port: ``metrics.path`` on ``server.host:metrics.port``, for Prometheus.

A worker-only daemon (``taskqueue worker``) serves no API, so without this nothing could scrape
it. When ``metrics.port`` is set, every mode serves its metrics here and the API port does not.
The port answers nothing but the metrics (no token: there is nothing secret in them) and keeps
serving through a drain, so the drain itself can be watched; it closes with the daemon.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from taskqueue.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from taskqueue.daemon.runtime import Daemon

log = logging.getLogger(__name__)


class MetricsApp:
    """A minimal ASGI app: ``GET path`` renders the daemon's registry, anything else is 404."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.path = daemon.config.metrics.path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != self.path:
            await _reply(send, 404, b"not found; metrics are at " + self.path.encode() + b"\n")
        elif scope["method"] not in ("GET", "HEAD"):
            await _reply(send, 405, b"GET only\n", [(b"allow", b"GET, HEAD")])
        else:
            metrics = self.daemon.metrics
            await metrics.refresh(self.daemon.broker)
            body = metrics.render()
            await _reply(send, 200, body if scope["method"] == "GET" else b"", content=CONTENT_TYPE)


async def _reply(
    send: Any,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content: str = "text/plain; charset=utf-8",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def serve_metrics(
    daemon: Daemon, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the metrics port until cancelled; report the bound URLs once listening."""
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve

    host, port = daemon.config.server.host, daemon.config.metrics.port or 0
    config = HypercornConfig()
    # An IPv6 address goes in brackets, as hypercorn parses binds.
    config.bind = [
        f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    ]
    config.insecure_bind = []
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    await serve(
        MetricsApp(daemon),  # type: ignore[arg-type]
        config,
        shutdown_trigger=trio.sleep_forever,
        task_status=task_status,
    )
