"""The plainest Redis clients there are, for the ceilings the benchmarks print beside their
figures: a socket and hiredis, on a blocking socket (no event loop at all) or driven by trio
(``wait_readable``, nothing else). Commands are sent packed, one at a time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

import hiredis
import trio

from taskqueue.redis import RedisAddress

READ_SIZE = 65536


def connect(url: str) -> socket.socket:
    address = RedisAddress.from_url(url)
    sock = socket.create_connection((address.host, address.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def check(reply: object) -> object:
    """``reply``, unless Redis answered an error: then the benchmark stops, saying so."""
    if isinstance(reply, hiredis.ReplyError):
        raise SystemExit(f"a ceiling's command failed: {reply}")
    return reply


class BlockingRedis:
    """A connection on a blocking socket: send, then wait for the reply."""

    def __init__(self, url: str) -> None:
        self.sock = connect(url)
        self.reader = hiredis.Reader(encoding="utf-8")

    def send(self, *args: str) -> None:
        self.sock.sendall(hiredis.pack_command(args))  # type: ignore[arg-type]

    def reply(self) -> object:
        reply = self.reader.gets()
        while reply is False:
            self.reader.feed(self.sock.recv(READ_SIZE))
            reply = self.reader.gets()
        return reply

    def call(self, *args: str) -> object:
        self.send(*args)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def blocking_replay(url: str, commands: Iterable[bytes]) -> tuple[int, float]:
    """Send each packed command and read its reply before the next, on a blocking socket:
    (commands sent, seconds)."""
    redis = BlockingRedis(url)
    count, start = 0, time.perf_counter()
    for payload in commands:
        redis.sock.sendall(payload)
        check(redis.reply())
        count += 1
    seconds = time.perf_counter() - start
    redis.close()
    return count, seconds


async def trio_replay(url: str, commands: Iterable[bytes]) -> tuple[int, float]:
    """As :func:`blocking_replay`, the socket driven by trio."""
    sock = connect(url)
    sock.setblocking(False)
    reader = hiredis.Reader()
    count, start = 0, time.perf_counter()
    for payload in commands:
        sock.send(payload)
        reply = False
        while reply is False:
            await trio.lowlevel.wait_readable(sock)
            reader.feed(sock.recv(READ_SIZE))
            reply = reader.gets()
        check(reply)
        count += 1
    seconds = time.perf_counter() - start
    sock.close()
    return count, seconds
