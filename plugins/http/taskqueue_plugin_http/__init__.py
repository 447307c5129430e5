"""taskqueue plugin: the ``http.request`` task type.

Sends one HTTP request described by the task's payload and returns the status, a few headers,
the body (as text, capped) and the time it took. Safe by default: it connects only to public
unicast addresses, checked on the address it actually connects to (every redirect hop too),
follows redirects only when the payload asks, and stops reading a response past
``max_response_bytes``. See README.md for the payload and the ``[plugins.http]`` settings.
"""

from __future__ import annotations

from taskqueue.plugin import ProcessorRegistry, hookimpl
from taskqueue_plugin_http.addresses import AddressPolicy, non_public_reason
from taskqueue_plugin_http.errors import (
    DestinationNotAllowedError,
    HttpRequestError,
    HttpTaskError,
    RequestTimeoutError,
    ResponseTooLargeError,
    UnexpectedStatusError,
)
from taskqueue_plugin_http.payload import HttpRequestSpec
from taskqueue_plugin_http.processor import HttpRequestProcessor
from taskqueue_plugin_http.settings import HttpSettings

TASK_TYPE = "http.request"


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    """Register ``http.request`` with the operator's ``[plugins.http]`` settings."""
    settings = registry.settings_as(HttpSettings)
    processor = HttpRequestProcessor(settings)
    registry.add(
        TASK_TYPE,
        processor.run,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        payload=HttpRequestSpec,
        description="Send an HTTP request (public addresses only unless configured otherwise).",
    )


__all__ = [
    "TASK_TYPE",
    "AddressPolicy",
    "DestinationNotAllowedError",
    "HttpRequestError",
    "HttpRequestProcessor",
    "HttpRequestSpec",
    "HttpSettings",
    "HttpTaskError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "UnexpectedStatusError",
    "non_public_reason",
    "taskqueue_register_processors",
]
