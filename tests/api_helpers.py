"""Helpers for the REST and server tests: a real daemon serving the API on a real socket.

* :func:`api_server` runs :func:`taskqueue.daemon.runtime.run_daemon` with
  :class:`taskqueue.api.service.ApiServer` on 127.0.0.1 port 0 (an API-only daemon by default;
  ``mode=Mode.RUN`` adds a worker running the built-in task types) and reports where it listens.
* :func:`make_self_signed_cert` makes a certificate for 127.0.0.1 with the ``openssl`` CLI (no
  ``cryptography`` needed).
* :func:`watching` opens the Server-Sent Events stream once its watch is live.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from daemon_helpers import daemon_config

from taskqueue.api.context import ApiContext
from taskqueue.api.events import EventHub
from taskqueue.api.service import ApiServer as ApiService
from taskqueue.broker import Broker
from taskqueue.daemon.runtime import Daemon, Mode, begin_shutdown, run_daemon
from taskqueue.processors import load_plugins

ADMIN_TOKEN = "admin-secret-token"
READ_TOKEN = "read-only-token"


#: Reapers that do not pass during the test (their interval is the smaller of these two), and
#: a worker timeout of 900 s, so a worker silent for 1000 s is dead but not yet forgotten.
SLOW_REAPER: dict[str, Any] = {
    "worker__heartbeat_interval": 600.0,
    "worker__worker_timeout": 900.0,
    "worker__cleanup_interval": 3600.0,
}


@attrs.define
class ApiServer:
    daemon: Daemon
    events: EventHub
    urls: list[str]
    cafile: Path | None = None

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def broker(self) -> Broker:
        return self.daemon.broker

    def client(
        self,
        *,
        http2: bool = False,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> httpx.AsyncClient:
        """An httpx client of this server: HTTP/1.1, or with ``http2`` HTTP/2 (prior knowledge
        on a cleartext port, ALPN over TLS), sending ``token`` as its bearer token."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: Any = str(self.cafile) if self.cafile is not None else True
        cleartext = self.url.startswith("http://")
        return httpx.AsyncClient(
            base_url=self.url,
            http1=not (http2 and cleartext),
            http2=http2,
            headers=headers,
            verify=verify,
            timeout=10.0,
            **options,
        )


@asynccontextmanager
async def api_server(
    redis_url: str,
    *,
    mode: Mode = Mode.SERVER,
    cert: tuple[Path, Path] | None = None,
    plugins: tuple[object, ...] = (),
    **settings: object,
) -> AsyncIterator[ApiServer]:
    """A daemon serving the API for the ``async with`` block.

    ``settings`` are configuration overrides (``server__tokens=("t",)`` sets
    ``server.tokens``); ``cert`` serves TLS with that certificate and key; ``plugins`` are
    plugin objects whose task types its worker (``mode=Mode.RUN``) runs too.
    """
    overrides: dict[str, object] = {"server__port": 0, **settings}
    if cert is not None:
        overrides.update(server__certfile=str(cert[0]), server__keyfile=str(cert[1]))
    config = daemon_config(redis_url, **overrides)
    services: list[ApiService] = []

    def api(context: ApiContext) -> ApiService:
        services.append(ApiService(context))
        return services[0]

    loaded = load_plugins(settings=config.plugins, extra=plugins)
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(
            functools.partial(run_daemon, config, loaded, mode=mode, api=api, handle_signals=False)
        )
        service = services[0]
        server = ApiServer(
            daemon, service.events, service.urls, cert[0] if cert is not None else None
        )
        try:
            yield server
        except BaseException:
            nursery.cancel_scope.cancel()
            raise
        begin_shutdown(daemon)
        nursery.cancel_scope.deadline = trio.current_time() + 10


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost (P-256, one day), made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem details of an error response, after checking it is one."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("urn:taskqueue:problem:")
    return body


@attrs.define
class Watch:
    """An open ``GET /api/v1/events`` stream, read line by line."""

    response: httpx.Response
    lines: AsyncIterator[str]

    async def events(self, count: int, *, within: float = 10.0) -> list[tuple[str, Any]]:
        """The next ``count`` events, as (event name, decoded data) pairs."""
        events: list[tuple[str, Any]] = []
        name, data = "message", ""
        with trio.fail_after(within):
            async for line in self.lines:
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and data:
                    events.append((name, json.loads(data)))
                    name, data = "message", ""
                    if len(events) == count:
                        break
        return events


@asynccontextmanager
async def watching(
    client: httpx.AsyncClient, params: Mapping[str, str] | None = None
) -> AsyncIterator[Watch]:
    """Open ``GET /api/v1/events`` and wait for its ``: watching`` line (the watch is live)."""
    async with client.stream("GET", "/api/v1/events", params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        with trio.fail_after(10):
            first = await anext(lines)
        assert first == ": watching"
        yield Watch(response, lines)
