"""Helpers for the abuse tests: a whole daemon (``taskqueue run``) as a process, its memory,
and a raw HTTP/2 client that says what a hostile one says (huge frames and windows, big
bodies sent as fast as flow control lets them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
from daemon_helpers import STARTUP, WorkerProcess, free_port, worker_env
from grpc_helpers import RawResponse

#: What a hostile client announces: the largest frames and windows HTTP/2 allows.
HUGE_SETTINGS: Mapping[int, int] = {
    h2.settings.SettingCodes.MAX_FRAME_SIZE: 2**24 - 1,
    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1,
}


@asynccontextmanager
async def api_daemon(
    tmp_path: Path, redis_url: str, name: str = "daemon", **variables: str
) -> AsyncIterator[tuple[WorkerProcess, int]]:
    """A ``taskqueue run`` process (API and worker) on a free port: it and its port."""
    port = free_port()
    env = worker_env(redis_url, TASKQUEUE_SERVER__PORT=str(port), **variables)
    async with WorkerProcess(tmp_path, env, name=name, command="run") as daemon:
        await daemon.wait_for_log("API listening", within=STARTUP)
        yield daemon, port


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class H2Client:
    """One cleartext HTTP/2 connection whose requests send their bodies as fast as the
    server's flow control allows, in frames as large as the server accepts."""

    def __init__(self, stream: trio.SocketStream, settings: Mapping[int, int]) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.conn.update_settings(dict(settings))
        # What the server may send before it acknowledges (and h2 would apply) the settings.
        frame_size = settings.get(h2.settings.SettingCodes.MAX_FRAME_SIZE, 2**14)
        self.conn.max_inbound_frame_size = self.conn.incoming_buffer.max_frame_size = frame_size
        if settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE, 0) > 65535:
            self.conn.increment_flow_control_window(2**31 - 1 - 65535)
        self.responses: dict[int, RawResponse] = {}
        self.ended: set[int] = set()
        self.goaway: int | None = None  # the error code of a GOAWAY received
        self.closed = False

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, port: int, settings: Mapping[int, int] = HUGE_SETTINGS
    ) -> AsyncIterator[H2Client]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            client = cls(stream, settings)
            await client.flush()
            yield client
        finally:
            await stream.aclose()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def request(
        self, path: str, body: bytes, headers: Mapping[str, str], method: str = "POST"
    ) -> int:
        """Send a request and its whole body (waiting for window as needed); its stream id."""
        stream_id = await self.open_stream(path, headers, method)
        await self.send_body(stream_id, body, end=True)
        return stream_id

    async def open_stream(self, path: str, headers: Mapping[str, str], method: str = "POST") -> int:
        """Send a request's headers; its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        request = [(":method", method), (":scheme", "http"), (":authority", "127.0.0.1")]
        request += [(":path", path), *headers.items()]
        self.conn.send_headers(stream_id, [(k.encode(), v.encode()) for k, v in request])
        self.responses[stream_id] = RawResponse()
        await self.flush()
        return stream_id

    async def send_body(self, stream_id: int, body: bytes, *, end: bool) -> None:
        """Send ``body`` on the stream as fast as flow control allows (stopping if the server
        ends the stream), then END_STREAM if ``end``."""
        at = 0
        while at < len(body) and stream_id not in self.ended and not self.closed:
            room = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
                len(body) - at,
            )
            if room <= 0:
                await self.receive()
                continue
            self.conn.send_data(stream_id, body[at : at + room])
            at += room
            await self.flush()
        if end and stream_id not in self.ended and not self.closed:
            self.conn.end_stream(stream_id)
            await self.flush()

    async def response(self, stream_id: int) -> RawResponse:
        """Read until the stream ends (or the connection does)."""
        while stream_id not in self.ended and not self.closed:
            await self.receive()
        return self.responses[stream_id]

    async def receive(self) -> None:
        data = await self.stream.receive_some(2**16)
        if not data:
            self.closed = True
            self.ended.update(self.responses)
            return
        for event in self.conn.receive_data(data):
            self._handle(event)
        await self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event.error_code
            return
        response = self.responses.get(getattr(event, "stream_id", -1))
        if response is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            headers = {k.decode(): v.decode() for k, v in event.headers}
            response.status = int(headers.pop(":status"))
            response.headers = headers
        elif isinstance(event, h2.events.DataReceived):
            response.data += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            response.reset = True
            self.ended.add(event.stream_id)


GRPC_HEADERS: Mapping[str, str] = {"content-type": "application/grpc", "te": "trailers"}
JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json"}
