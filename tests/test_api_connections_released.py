"""A connection whose client is gone stops counting at once: hypercorn kept one whose client
closed with a response unread (the kernel then resets it) for its whole keep-alive timeout, so
as many such clients as ``server.max_connections`` shut everyone else out for a minute."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import trio
from api_helpers import api_server

LIMIT = 5


def get_and_leave(host: str, port: int, times: int) -> None:
    """``times`` connections, each reading only its response's headers before closing."""
    for _ in range(times):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(1)  # leave the body unread: close() resets the connection
            assert data.startswith(b"HTTP/1.1 200"), data


async def test_connections_whose_clients_left_stop_counting_against_the_limit(
    redis_url: str,
) -> None:
    async with api_server(redis_url, server__max_connections=LIMIT) as server:
        address = urlsplit(server.url)
        assert address.hostname is not None and address.port is not None
        await trio.to_thread.run_sync(get_and_leave, address.hostname, address.port, 4 * LIMIT)
        with trio.fail_after(10):
            async with server.client() as client:
                while (response := await client.get("/healthz")).status_code == 503:  # noqa: ASYNC110
                    await trio.sleep(0.05)  # a reset may take a moment to reach the server
        assert response.status_code == 200
