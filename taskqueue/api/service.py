"""The daemon's API service: hypercorn (trio worker) serving REST and gRPC on one port.

``server.host:server.port`` carries HTTP/1.1 and cleartext HTTP/2 (prior knowledge, as gRPC
clients use, and the Upgrade dance). With ``server.certfile`` (and ``keyfile``, unless the
certificate file holds the key) the same address serves TLS instead, offering HTTP/2 and
HTTP/1.1 by ALPN: a port that still took cleartext would let tokens cross the network in clear.

Before it binds, the service refuses to expose an API without tokens beyond the loopback
interface unless ``server.allow_unauthenticated_public`` says so (:func:`check_exposure`).
It applies the hypercorn fixes of :mod:`taskqueue.api.patches.hypercorn_fixes`, runs the event hub
that feeds live task events to watchers, and stops gracefully when ``context.shutdown`` is
set: no new connections, running requests get ``GRACEFUL_TIMEOUT`` seconds to finish, watch
streams end.
"""

from __future__ import annotations

import logging
import socket
import ssl
from functools import partial
from typing import Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from taskqueue.addresses import is_loopback
from taskqueue.api.asgi import create_app
from taskqueue.api.auth import Authenticator
from taskqueue.api.context import ApiContext
from taskqueue.api.events import EventHub
from taskqueue.api.patches import hypercorn_fixes
from taskqueue.api.patches.hypercorn_tcp import set_limits
from taskqueue.config import ServerConfig
from taskqueue.errors import ConfigError
from taskqueue.listening import listen_errors

log = logging.getLogger(__name__)

#: Seconds running requests get to finish once shutdown begins.
GRACEFUL_TIMEOUT: Final = 5.0
#: Seconds an idle keep-alive connection stays open (gRPC channels reconnect after it).
KEEP_ALIVE_TIMEOUT: Final = 60.0
#: Requests one connection may carry. Hypercorn's default (1,000) sends GOAWAY to busy
#: HTTP/2 connections, which fails grpclib calls in flight; this is "never" in practice.
KEEP_ALIVE_MAX_REQUESTS: Final = 2**62


class ApiServer:
    """The API as a daemon service: serves until ``context.shutdown`` is set, then drains.

    ``urls`` holds what hypercorn bound once the service has started, e.g.
    ``["http://127.0.0.1:9090"]`` (with port 0, the port the system chose). ``events`` is the
    hub feeding watch streams; by default the service makes its own. Either way it runs it.
    """

    name = "api"
    drains = True

    def __init__(self, context: ApiContext, *, events: EventHub | None = None) -> None:
        self.context = context
        self.events = events or EventHub(context.broker, context.health)
        self.urls: list[str] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        server = self.context.server
        authenticator = check_server(server)
        hypercorn_fixes.install()
        app = create_app(self.context, authenticator, self.events)
        config = hypercorn_config(server)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.events.run)
            with listen_errors(bind_address(server.host, server.port), "server.host/server.port"):
                if server.reuse_port:
                    # Hypercorn sets SO_REUSEPORT only in its own multi-process mode: bind here,
                    # with it, and hand hypercorn the socket (which then owns the descriptor).
                    fd = reuse_port_socket(server.host, server.port).detach()
                    config.bind = [f"fd://{fd}"]
                self.urls = await nursery.start(
                    partial(_serve_until_shutdown, app, config, self.context.shutdown, nursery)
                )
            if not authenticator.enabled:
                log.warning(
                    "API authentication is OFF (no server.tokens or server.token_file): "
                    "anyone who can reach %s may submit and cancel tasks",
                    ", ".join(self.urls),
                )
            log.info("API listening on %s (REST, gRPC, HTTP/1.1 and HTTP/2)", ", ".join(self.urls))
            task_status.started()


async def _serve_until_shutdown(
    app: object,
    config: HypercornConfig,
    shutdown: trio.Event,
    siblings: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)  # type: ignore[arg-type]
    siblings.cancel_scope.cancel()  # serve() returns after a graceful stop: end the event hub too


def check_server(server: ServerConfig) -> Authenticator:
    """What the API checks before it binds, also run by ``taskqueue config check``: the tokens
    (and token file) load, the exposure is safe, the TLS files load. Raises ConfigError."""
    authenticator = Authenticator.from_config(server)
    check_exposure(server, authenticator)
    if server.certfile is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                server.certfile, server.keyfile or server.certfile
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"server.certfile = {server.certfile!r}, server.keyfile = {server.keyfile!r}: "
                f"cannot load the TLS certificate and key: {exc.strerror or exc}"
            ) from None
    return authenticator


def hypercorn_config(server: ServerConfig) -> HypercornConfig:
    config = HypercornConfig()
    # Hypercorn's ``bind`` is TLS when a certificate is set and cleartext otherwise; its
    # ``insecure_bind`` (a second, cleartext port beside TLS) stays unused, see above.
    config.bind = [bind_address(server.host, server.port)]
    config.insecure_bind = []
    if server.certfile is not None:
        config.certfile = server.certfile
        config.keyfile = server.keyfile or server.certfile  # a PEM may hold both
    config.alpn_protocols = ["h2", "http/1.1"]
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    set_limits(
        config,
        max_connections=server.max_connections,
        max_request_bytes=server.max_request_bytes,
    )
    return config


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` with SO_REUSEPORT (and SO_REUSEADDR), so that
    other processes doing the same share the port; hypercorn listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_address(host: str, port: int) -> str:
    """``host:port`` as hypercorn parses it (an IPv6 address in brackets)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def check_exposure(server: ServerConfig, authenticator: Authenticator) -> None:
    """Refuse to serve an API without tokens beyond loopback, unless told to on purpose.

    Raises ConfigError. Call it before starting the daemon to fail with a clear message.
    """
    if authenticator.enabled or server.allow_unauthenticated_public or is_loopback(server.host):
        return
    raise ConfigError(
        f"server.host = {server.host!r} would open the API to the network with no token "
        "configured, so anyone reaching it could submit and cancel tasks. Set server.tokens "
        "or server.token_file, bind a loopback address (127.0.0.1), or set "
        "server.allow_unauthenticated_public = true if that is really what you want"
    )
