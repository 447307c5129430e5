"""The ``http.request`` payload: a msgspec Struct the core checks before the processor runs.

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

Types and limits are the fields' annotations; ``__post_init__`` checks what they cannot say.
A payload that does not fit fails the task for good (it would not fit on a retry either) with
:class:`~taskqueue.errors.InvalidPayloadError` naming the field: ``payload.url: ...``. No I/O
here: which addresses a request may reach is checked where it connects (``transport``).
"""

from __future__ import annotations

import json as jsonlib
import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Final

import httpx
import msgspec
from msgspec.structs import force_setattr

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Headers the HTTP client sets itself; letting a payload set them would break the framing.
MANAGED_HEADERS: Final = frozenset(
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
# Checked in __post_init__, not as a Meta pattern: the core words pattern failures for task
# types only, and a header name deserves its own message.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_URL_LENGTH: Final = 8192

StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599, description="an HTTP status, 100-599")]


class HttpRequestSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An ``http.request`` payload. Registered as the type's payload, so the processor only
    ever sees a valid one; each ``__post_init__`` message starts with its field's name."""

    url: Annotated[str, msgspec.Meta(max_length=MAX_URL_LENGTH)]
    #: Any case; upper-cased here.
    method: str = "POST"
    headers: dict[str, str] = {}
    #: Sent as UTF-8.
    body: str | None = None
    #: Sent as compact JSON; UNSET (absent) differs from null, which sends ``null``.
    json: Any | msgspec.UnsetType = msgspec.UNSET
    #: None means any 2xx status.
    expected_status: Annotated[frozenset[StatusCode], msgspec.Meta(min_length=1)] | None = None
    #: Seconds for the whole request, redirects included.
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    follow_redirects: bool = False

    def __post_init__(self) -> None:
        if self.method.upper() not in METHODS:
            raise ValueError(
                f"method: expected one of {', '.join(sorted(METHODS))}, got {self.method!r}"
            )
        force_setattr(self, "method", self.method.upper())
        _check_url(self.url)
        _check_headers(self.headers)
        if self.body is not None and self.json is not msgspec.UNSET:
            raise ValueError("body: give either 'body' or 'json', not both")
        if self.json is not msgspec.UNSET:
            try:
                _encode(self.json)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"json: cannot be encoded as JSON: {exc}") from None
        if self.timeout is not None and not math.isfinite(self.timeout):
            raise ValueError(f"timeout: expected a finite number of seconds, got {self.timeout}")

    @property
    def content(self) -> bytes | None:
        """The request body: ``body`` as UTF-8, or ``json`` encoded, or None."""
        if self.json is not msgspec.UNSET:
            return _encode(self.json).encode()
        return None if self.body is None else self.body.encode()

    @property
    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """``headers``, plus ``Content-Type: application/json`` for a ``json`` body unless
        they set a content type themselves."""
        headers = tuple(self.headers.items())
        if self.json is not msgspec.UNSET and not any(
            name.lower() == "content-type" for name, _ in headers
        ):
            headers = (*headers, ("Content-Type", "application/json"))
        return headers

    def is_expected(self, status: int) -> bool:
        if self.expected_status is None:
            return 200 <= status <= 299
        return status in self.expected_status

    def describe_expected(self) -> str:
        if self.expected_status is None:
            return "200-299"
        return format_statuses(self.expected_status)


def _check_url(value: str) -> None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"url: {value!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError(f"url: scheme must be http or https, got {url.scheme!r} in {value!r}")
    if not url.host:
        raise ValueError(f"url: {value!r} has no host")


def _check_headers(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"headers: {name!r} is not a valid header name")
        if name.lower() in MANAGED_HEADERS:
            raise ValueError(f"headers: {name!r} is set by the HTTP client and cannot be given")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"headers: the value of {name!r} contains a line break or NUL")


def _encode(value: Any) -> str:
    return jsonlib.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


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
