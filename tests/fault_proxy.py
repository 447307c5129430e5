"""A TCP proxy that injects network faults between a daemon and Redis (or a client and the API).

This machine has no netem, iptables or toxiproxy, so the fault tests put this proxy in the
path: the daemon's ``redis.url`` names the proxy's port, the proxy forwards to the real server,
and the test turns faults on and off while traffic flows:

- :meth:`FaultProxy.slow` adds latency to every chunk, in each direction, without reordering
  (chunks queue behind each other, so a burst is delayed once, not once per chunk);
- :meth:`FaultProxy.partition` holds every byte in both directions, and accepts new
  connections without connecting them onward, until :meth:`FaultProxy.heal`: what TCP does
  during a network partition shorter than its retransmission timeout, so after the heal the
  streams go on where they stopped (dropping bytes instead would corrupt the RESP stream, which
  no real network does to a TCP connection);
- :meth:`FaultProxy.reset` closes every open connection at once (with RST), as a restarted
  middlebox or a killed peer does; new connections are forwarded as before.

Run it in the test's nursery: ``proxy = await nursery.start(FaultProxy(port).serve)``.
"""

from __future__ import annotations

import socket
import struct

import trio

#: Bytes read from one side at a time.
CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:``port`` (chosen when serving) to ``target_host``:``target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.latency = 0.0
        self.connections = 0  # accepted so far
        self._flowing = trio.Event()
        self._flowing.set()
        self._scopes: set[trio.CancelScope] = set()
        self._streams: set[trio.SocketStream] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- faults -----------------------------------------------------------------------------------

    def slow(self, latency: float) -> None:
        """Delay every chunk by ``latency`` seconds in each direction (0 for none)."""
        self.latency = latency

    def partition(self) -> None:
        """Hold every byte (both directions, open and new connections) until :meth:`heal`."""
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def heal(self) -> None:
        self._flowing.set()

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    def reset(self) -> None:
        """Close every open connection with a TCP reset."""
        for stream in list(self._streams):
            _abort(stream)
        for scope in list(self._scopes):
            scope.cancel()

    # -- serving ----------------------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[FaultProxy] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._forward, listeners)

    async def _forward(self, client: trio.SocketStream) -> None:
        self.connections += 1
        server: trio.SocketStream | None = None
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            self._streams.add(client)
            try:
                await self._flowing.wait()  # a partition: the connection is accepted, not served
                server = await trio.open_tcp_stream(*self.target)
                self._streams.add(server)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                    nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._scopes.discard(scope)
                for stream in (client, server):
                    if stream is not None:
                        self._streams.discard(stream)
                        await trio.aclose_forcefully(stream)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        """Copy ``source`` to ``sink`` through a queue that applies the current faults; the end
        of either side ends both directions."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](1024)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver, receive, sink, both)
            try:
                async with send:
                    while True:
                        data = await source.receive_some(CHUNK)
                        if not data:
                            break
                        await send.send((trio.current_time() + self.latency, data))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                both.cancel()

    async def _deliver(
        self,
        queue: trio.MemoryReceiveChannel[tuple[float, bytes]],
        sink: trio.SocketStream,
        both: trio.CancelScope,
    ) -> None:
        try:
            async with queue:
                async for due, data in queue:
                    await trio.sleep_until(due)
                    await self._flowing.wait()
                    await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        both.cancel()  # one side ended (or broke): the connection ends as a whole


def _abort(stream: trio.SocketStream) -> None:
    """Make the next close of ``stream`` send RST instead of FIN, and shut it down now."""
    sock = stream.socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
