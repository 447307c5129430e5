"""The ``http.request`` payload: its fields, their defaults, and validation. No I/O here.

::

    {
      "method": "POST",                 # GET HEAD POST PUT PATCH DELETE OPTIONS; default POST
      "url": "https://example.com/hook", # required, http or https
      "headers": {"X-Token": "..."},     # optional, str -> str
      "body": "raw text",                # optional; or "json": <any JSON value>, not both
      "expected_status": [200, 201],     # optional; default 200-299
      "timeout": 10,                     # optional seconds for the whole request (and redirects)
      "follow_redirects": false          # optional; default false
    }
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from taskqueue_plugin_http.errors import HttpPayloadError

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FIELDS = frozenset(
    {"method", "url", "headers", "body", "json", "expected_status", "timeout", "follow_redirects"}
)
#: Headers the HTTP client sets itself; letting a payload set them would break the framing.
MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_MAX_URL_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class HttpRequestSpec:
    """A validated payload, ready to send."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None
    #: None means any 2xx status.
    expected_status: frozenset[int] | None = None
    timeout: float | None = None
    follow_redirects: bool = False

    def is_expected(self, status: int) -> bool:
        if self.expected_status is None:
            return 200 <= status <= 299
        return status in self.expected_status

    def describe_expected(self) -> str:
        if self.expected_status is None:
            return "200-299"
        return format_statuses(self.expected_status)


def parse_payload(payload: Any) -> HttpRequestSpec:
    """Validate an ``http.request`` payload, or raise :class:`HttpPayloadError` naming the field."""
    if not isinstance(payload, Mapping):
        raise HttpPayloadError(
            f"payload: expected an object with at least 'url', got {_kind(payload)}", field=None
        )
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise HttpPayloadError(
            f"{unknown[0]}: unknown field; the fields are {', '.join(sorted(FIELDS))}",
            field=unknown[0],
        )
    method = _parse_method(payload.get("method", "POST"))
    url = _parse_url(payload.get("url"))
    headers = _parse_headers(payload.get("headers", {}))
    content, content_type = _parse_body(payload)
    if content_type is not None and not any(k.lower() == "content-type" for k, _ in headers):
        headers = (*headers, ("Content-Type", content_type))
    return HttpRequestSpec(
        method=method,
        url=url,
        headers=headers,
        content=content,
        expected_status=_parse_expected(payload.get("expected_status")),
        timeout=_parse_timeout(payload.get("timeout")),
        follow_redirects=_parse_bool("follow_redirects", payload.get("follow_redirects", False)),
    )


def format_statuses(statuses: Iterable[int]) -> str:
    """``{200, 201, 202, 204}`` -> ``"200-202, 204"``."""
    ordered = sorted(statuses)
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)


def redact_url(url: str | httpx.URL) -> str:
    """``url`` without its credentials, query and fragment: fit for logs and error messages."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


def _parse_method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise HttpPayloadError(
            f"method: expected one of {', '.join(sorted(METHODS))}, got {value!r}", field="method"
        )
    return value.upper()


def _parse_url(value: Any) -> str:
    if value is None:
        raise HttpPayloadError("url: required", field="url")
    if not isinstance(value, str):
        raise HttpPayloadError(f"url: expected a string, got {_kind(value)}", field="url")
    if len(value) > _MAX_URL_LENGTH:
        raise HttpPayloadError(f"url: longer than {_MAX_URL_LENGTH} characters", field="url")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise HttpPayloadError(f"url: {value!r} is not a valid URL: {exc}", field="url") from None
    if url.scheme not in ("http", "https"):
        raise HttpPayloadError(
            f"url: scheme must be http or https, got {url.scheme!r} in {value!r}", field="url"
        )
    if not url.host:
        raise HttpPayloadError(f"url: {value!r} has no host", field="url")
    return value


def _parse_headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise HttpPayloadError(
            f"headers: expected an object of name -> value, got {_kind(value)}", field="headers"
        )
    headers: list[tuple[str, str]] = []
    for name, val in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise HttpPayloadError(f"headers: {name!r} is not a valid header name", field="headers")
        if name.lower() in MANAGED_HEADERS:
            raise HttpPayloadError(
                f"headers: {name!r} is set by the HTTP client and cannot be given", field="headers"
            )
        if not isinstance(val, str):
            raise HttpPayloadError(
                f"headers: the value of {name!r} must be a string, got {_kind(val)}",
                field="headers",
            )
        if any(c in val for c in "\r\n\0"):
            raise HttpPayloadError(
                f"headers: the value of {name!r} contains a line break or NUL", field="headers"
            )
        headers.append((name, val))
    return tuple(headers)


def _parse_body(payload: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
    """The request body and the content type it implies."""
    if "body" in payload and "json" in payload:
        raise HttpPayloadError("body: give either 'body' or 'json', not both", field="body")
    if "json" in payload:
        try:
            text = json.dumps(
                payload["json"], ensure_ascii=False, allow_nan=False, separators=(",", ":")
            )
        except (TypeError, ValueError) as exc:
            message = f"json: cannot be encoded as JSON: {exc}"
            raise HttpPayloadError(message, field="json") from None
        return text.encode(), "application/json"
    body = payload.get("body")
    if body is None:
        return None, None
    if not isinstance(body, str):
        raise HttpPayloadError(
            f"body: expected a string (use 'json' for structured data), got {_kind(body)}",
            field="body",
        )
    return body.encode(), None


def _parse_expected(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise HttpPayloadError(
            f"expected_status: expected a non-empty list of status codes, got {value!r}",
            field="expected_status",
        )
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise HttpPayloadError(
                f"expected_status: {status!r} is not a status code (an integer 100-599)",
                field="expected_status",
            )
    return frozenset(value)


def _parse_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HttpPayloadError(
            f"timeout: expected a number of seconds, got {_kind(value)}", field="timeout"
        )
    if not (value > 0 and math.isfinite(value)):
        raise HttpPayloadError(
            f"timeout: expected a positive number of seconds, got {value!r}", field="timeout"
        )
    return float(value)


def _parse_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise HttpPayloadError(f"{field}: expected true or false, got {value!r}", field=field)
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
