"""The quart-trio app class the REST API runs on: quart-trio's own, with two corrections.

**A refused request could hang the next one on its connection.** quart-trio runs each request
as two tasks: one reads the ASGI messages, the other handles the request and sends the
response. When the reader sees ``http.disconnect`` it cancels both. But hypercorn sends that
disconnect *itself*, from inside the response's last ``send``: once the response is complete it
closes the stream, and when the request body has not all arrived yet (the app answered 401,
413, 415 or 422 before reading it) it goes on to close the HTTP/1.1 connection, still inside
that ``send``. quart-trio's cancellation then lands in the middle of hypercorn's close: about
one time in two the socket was neither closed nor recycled, and the next request on that
keep-alive connection waited forever. Clients such as ``requests`` send the headers and the
body separately, so any early refusal could hang their next call.
:class:`CompletingHTTPConnection` tells the two apart: a disconnect that arrives while the last
part of the response is being sent is the server finishing its own work, so the handler is left
to return normally (it has nothing left to do); a disconnect before that still cancels it, as a
client that goes away mid-response should. hypercorn then closes (or recycles) the connection
the way it intends, and the client sees the connection end instead of waiting on it.

**Path parameters match what they name.** The URL map knows the converters of
:data:`taskqueue.api.rest.routing.CONVERTERS`, so ``{task_id}`` matches task ids only.
"""

from __future__ import annotations

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent
from quart.asgi import ASGIHTTPConnection
from quart.routing import QuartMap
from quart.wrappers import Request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.datastructures import ImmutableDict

from taskqueue.api.rest.routing import CONVERTERS


class RestUrlMap(QuartMap):
    """Quart's URL map, with the REST API's own converters."""

    default_converters = ImmutableDict({**QuartMap.default_converters, **CONVERTERS})


class CompletingHTTPConnection(TrioASGIHTTPConnection):
    """quart-trio's HTTP connection, letting the response's last ``send`` run to its end."""

    #: Set just before the response's last message is sent.
    finishing: bool = False

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def send_noting_the_end(message: ASGISendEvent) -> None:
            if is_last_message(message):
                self.finishing = True
            await send(message)

        await super().__call__(receive, send_noting_the_end)

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        await ASGIHTTPConnection.handle_messages(self, request, receive)  # until disconnect
        if not self.finishing:
            nursery.cancel_scope.cancel()


def is_last_message(message: ASGISendEvent) -> bool:
    """Whether ``message`` completes the response: the end of its body (quart sends no
    trailers)."""
    return message["type"] == "http.response.body" and not message.get("more_body", False)


class RestQuart(QuartTrio):
    """The app class of the REST API (see the module's docstring)."""

    asgi_http_class = CompletingHTTPConnection
    url_map_class = RestUrlMap
