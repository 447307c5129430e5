"""The ``http.request`` processor: send one request, check its status, return a summary."""

from __future__ import annotations

import codecs
import math
import ssl
from typing import Any

import httpx
import trio

from taskqueue.plugin import TaskContext
from taskqueue_plugin_http.errors import (
    HttpRequestError,
    RequestTimeoutError,
    ResponseTooLargeError,
    UnexpectedStatusError,
)
from taskqueue_plugin_http.payload import HttpRequestSpec, redact_url
from taskqueue_plugin_http.settings import HttpSettings
from taskqueue_plugin_http.transport import GuardedBackend, GuardedTransport, Resolver, resolve

#: Response headers copied into the result (the rest are dropped to keep results small).
RESULT_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "location",
    "etag",
    "last-modified",
    "retry-after",
    "cache-control",
)
_EXCERPT_CHARS = 500


class HttpRequestProcessor:
    """Runs ``http.request`` tasks with one set of operator settings.

    A new client (and connection pool) is made per task: the plugin API has no hook for a
    worker-wide resource, and a per-task pool keeps one task's connections away from another's.
    """

    def __init__(self, settings: HttpSettings, *, resolver: Resolver = resolve) -> None:
        self.settings = settings
        self._resolver = resolver
        self._ssl: ssl.SSLContext | None = None

    @property
    def _ssl_context(self) -> ssl.SSLContext:
        """Made at the first task, not at registration: loading the CA bundle takes ~50 ms,
        which every daemon start (and every CLI command that loads plugins) would pay."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        """Send an HTTP request; fail unless the status is expected (default 2xx)."""
        spec: HttpRequestSpec = ctx.payload  # checked by the core: registered as the payload
        started = trio.current_time()
        target = redact_url(spec.url)
        try:
            with trio.fail_after(spec.timeout if spec.timeout is not None else math.inf):
                status, response_headers, final_url, redirects, body = await self._send(spec)
        except trio.TooSlowError:
            raise RequestTimeoutError(
                f"{spec.method} {target}: no complete response within timeout={spec.timeout}s"
            ) from None
        elapsed_ms = round((trio.current_time() - started) * 1000)
        text, truncated = _decode(body, response_headers, self.settings.result_body_bytes)
        ctx.logger.info("%s %s -> %d in %d ms", spec.method, target, status, elapsed_ms)
        if not spec.is_expected(status):
            excerpt = text[:_EXCERPT_CHARS]
            raise UnexpectedStatusError(
                f"{spec.method} {target} answered {status}, expected {spec.describe_expected()};"
                f" body: {excerpt!r}",
                status=status,
                body_excerpt=excerpt,
            )
        return {
            "status": status,
            "url": final_url,
            "redirects": redirects,
            "headers": {k: response_headers[k] for k in RESULT_HEADERS if k in response_headers},
            "body": text,
            "body_truncated": truncated,
            "body_bytes": len(body),
            "elapsed_ms": elapsed_ms,
        }

    async def _send(self, spec: HttpRequestSpec) -> tuple[int, httpx.Headers, str, int, bytes]:
        backend = GuardedBackend(self.settings.policy, resolver=self._resolver)
        headers = httpx.Headers(
            {"User-Agent": self.settings.user_agent, "Accept-Encoding": "identity"}
        )
        headers.update(list(spec.request_headers))
        client = httpx.AsyncClient(
            transport=GuardedTransport(backend, self._ssl_context),
            follow_redirects=spec.follow_redirects,
            max_redirects=self.settings.max_redirects,
            timeout=httpx.Timeout(spec.timeout),
            trust_env=False,
        )
        try:
            async with (
                client,
                client.stream(
                    spec.method, spec.url, headers=headers, content=spec.content
                ) as response,
            ):
                body = await _read_capped(response, self.settings.max_response_bytes)
                return (
                    response.status_code,
                    response.headers,
                    str(response.url),
                    len(response.history),
                    body,
                )
        except httpx.HTTPError as exc:
            raise HttpRequestError(f"{spec.method} {redact_url(spec.url)}: {exc}") from exc


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    """The body, read as it streams in; abort as soon as it is known to exceed ``cap``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ResponseTooLargeError(
            f"response declares {declared} bytes, more than max_response_bytes={cap}; not read"
        )
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            raise ResponseTooLargeError(
                f"response body exceeds max_response_bytes={cap}; stopped reading at {len(body)}"
            )
    return bytes(body)


def _decode(body: bytes, headers: httpx.Headers, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of ``body`` as text, and whether some were left out."""
    truncated = len(body) > limit
    encoding = _charset(headers.get("content-type", "")) or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # final=False when truncated: a character cut in half at the limit is dropped, not mangled.
    return decoder.decode(body[:limit], final=not truncated), truncated


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"'")
    return None
