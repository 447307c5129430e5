"""What can go wrong in an ``http.request`` task, each error saying it in words.

Every exception here fails the attempt; the queue retries it with backoff. A malformed payload
never reaches the processor: the core refuses it for good with ``InvalidPayloadError`` (see
``payload.py``). A destination error fails the same way on every retry; the message says how
an operator can allow it, so that the dead letter explains itself.
"""

from __future__ import annotations

from taskqueue.errors import InvalidTaskError, TaskQueueError


class HttpTaskError(TaskQueueError):
    """Base class of the errors this plugin raises on purpose."""


class DestinationNotAllowedError(InvalidTaskError):
    """The URL's host resolves to an address the plugin's settings do not allow.

    Raised before any byte is sent to that address, on the first request and on every
    redirect hop.
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(
            f"refusing to connect to {host!r} ({address}): it is a {reason} address; an operator"
            " can allow it with [plugins.http] allowed_networks or allow_private_networks = true",
            field="url",
        )
        self.host = host
        self.address = address
        self.reason = reason


class HttpRequestError(HttpTaskError):
    """The request did not get a complete response: DNS, connection, protocol or redirects."""


class RequestTimeoutError(HttpRequestError):
    """The request took longer than the payload's ``timeout``."""


class ResponseTooLargeError(HttpTaskError):
    """The response body is larger than ``max_response_bytes``; reading stopped there."""


class UnexpectedStatusError(HttpTaskError):
    """The response status is not one of ``expected_status``."""

    def __init__(self, message: str, *, status: int, body_excerpt: str) -> None:
        super().__init__(message)
        self.status = status
        self.body_excerpt = body_excerpt
