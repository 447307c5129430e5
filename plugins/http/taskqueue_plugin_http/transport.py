"""An httpx transport that checks the address it connects to, not the name it was given.

The check sits in the network backend, the layer that opens TCP connections: the host name is
resolved once, every address it resolves to is checked against the :class:`AddressPolicy`,
and the connection is made to that checked IP address. So

* every connection is checked, including each redirect hop (httpx opens them through here);
* DNS rebinding cannot slip in between the check and the connect: there is no second lookup;
* TLS still verifies the certificate against the host *name* (httpcore passes it as SNI).

A name with any refused address is refused as a whole, even if some of its addresses are public.
Environment proxies are never used (a proxy would be the only address checked).
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator

import httpcore
import httpx
import trio

from taskqueue_plugin_http.addresses import AddressPolicy, IPAddress
from taskqueue_plugin_http.errors import (
    DestinationNotAllowedError,
    HttpRequestError,
    RequestTimeoutError,
)
from taskqueue_plugin_http.payload import redact_url

#: ``resolve(host, port)`` -> the addresses to try, in order.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_HTTPCORE_FAILURES = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve ``host`` with the system resolver (in a thread, like every trio lookup)."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        raise HttpRequestError(f"cannot resolve {host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses ``policy`` allows."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else httpcore.TrioBackend()
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise HttpRequestError(f"{host!r} resolves to no address")
        for address in addresses:
            reason = self._policy.refusal(address)
            if reason is not None:
                raise DestinationNotAllowedError(host, str(address), reason)
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise HttpRequestError("connections to Unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, minus proxies, over a :class:`GuardedBackend`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=4,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translate_errors(request):
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translate_errors(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


@contextlib.contextmanager
def _translate_errors(request: httpx.Request) -> Iterator[None]:
    """httpcore's exceptions, as this plugin's, with the request they belong to."""
    target = f"{request.method} {redact_url(request.url)}"
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise RequestTimeoutError(f"{target}: {type(exc).__name__} {exc}".rstrip()) from exc
    except _HTTPCORE_FAILURES as exc:
        raise HttpRequestError(f"{target}: {type(exc).__name__}: {exc}") from exc
