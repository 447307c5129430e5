"""betterproto's generated services, closing a server stream's generator when its call ends.

betterproto (2.0.0b7) iterates a server-streaming handler's async generator without closing
it, so a call cancelled while it sends would leave the generator suspended (and, for
``WatchTasks``, an event watcher registered) until the garbage collector finalises it. The
override below, of a private method of ``ServiceBase``, wraps the iteration in ``aclosing`` so
the generator's ``finally`` blocks run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from betterproto.grpc.grpclib_server import ServiceBase


class ClosingStreams(ServiceBase):
    """Mix in before a generated ``…Base`` class."""

    async def _call_rpc_handler_server_stream(
        self, handler: Callable[[Any], Any], stream: Any, request: Any
    ) -> None:
        async with aclosing(handler(request)) as responses:
            async for response in responses:
                await stream.send_message(response)
