"""The metrics port: ``metrics.path`` on ``server.host:metrics.port``, for Prometheus.

A worker-only daemon (``taskqueue worker``) serves no API, so without this nothing could scrape
it. When ``metrics.port`` is set, every mode serves its metrics here and the API port does not.
The port answers nothing but the metrics, asks for no token (bind it to loopback, or keep it
behind a firewall: beyond loopback a warning is logged at start) and keeps
serving through a drain, so the drain itself can be watched; it closes with the daemon.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import trio

from taskqueue.addresses import is_loopback
from taskqueue.broker import Broker
from taskqueue.listening import listen_errors
from taskqueue.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class MetricsApp:
    """A minimal ASGI app: ``GET path`` renders the daemon's registry, anything else is 404."""

    def __init__(self, metrics: Metrics, broker: Broker, path: str) -> None:
        self.metrics = metrics
        self.broker = broker
        self.path = path

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
            await self.metrics.refresh(self.broker)
            body = self.metrics.render()
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


class MetricsServer:
    """The metrics port as a daemon service; ``urls`` holds what it bound once started."""

    name = "metrics"
    drains = False

    def __init__(self, app: MetricsApp, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.urls: list[str] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; report started once listening."""
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve

        config = HypercornConfig()
        # An IPv6 address goes in brackets, as hypercorn parses binds.
        host = self.host
        config.bind = [
            f"[{host}]:{self.port}"
            if ":" in host and not host.startswith("[")
            else f"{host}:{self.port}"
        ]
        config.insecure_bind = []
        config.include_server_header = False
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            with listen_errors(config.bind[0], "server.host/metrics.port"):
                self.urls = await nursery.start(
                    partial(serve, self.app, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
                )
            log.info("metrics at %s", ", ".join(url + self.app.path for url in self.urls))
            if not is_loopback(self.host):
                log.warning(
                    "the metrics port %s listens beyond loopback and asks for no token: "
                    "anyone who reaches it reads every task type, queue depth and error count",
                    ", ".join(self.urls),
                )
            task_status.started()
