"""The fault tests' proxy does what it says: forwards, delays, holds during a partition and
delivers after the heal, and resets connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import trio
from fault_proxy import FaultProxy

PING = b"PING\r\n"
PONG = b"+PONG\r\n"


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    port = urlsplit(redis_url).port
    assert port is not None
    async with trio.open_nursery() as nursery:
        yield await nursery.start(FaultProxy(port).serve)
        nursery.cancel_scope.cancel()


async def ping(stream: trio.SocketStream) -> bytes:
    await stream.send_all(PING)
    return await stream.receive_some(100)


async def test_it_forwards_to_redis(proxy: FaultProxy) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        assert await ping(stream) == PONG
        assert await ping(stream) == PONG
    assert proxy.connections == 1


async def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    proxy.slow(0.1)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        start = trio.current_time()
        assert await ping(stream) == PONG
        assert trio.current_time() - start >= 0.2  # there and back: a lower bound only


async def test_a_partition_holds_the_bytes_and_the_heal_delivers_them(proxy: FaultProxy) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        assert await ping(stream) == PONG
        proxy.partition()
        await stream.send_all(PING)
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(100)
        assert waited.cancelled_caught, "a reply crossed the partition"
        late = await trio.open_tcp_stream("127.0.0.1", proxy.port)  # accepted, not served
        async with late:
            await late.send_all(PING)
            proxy.heal()
            assert await stream.receive_some(100) == PONG
            assert await late.receive_some(100) == PONG


async def test_reset_closes_every_connection_and_new_ones_work(proxy: FaultProxy) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        assert await ping(stream) == PONG
        proxy.reset()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(3):  # the reset may surface on the send or on the receive
                if await ping(stream) == b"":
                    raise trio.BrokenResourceError("closed")
    fresh = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with fresh:
        assert await ping(fresh) == PONG
