"""Errors as ``application/problem+json`` (RFC 9457): the REST face of :class:`ApiError`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from taskqueue import _json
from taskqueue.api.errors import ApiError
from taskqueue.api.rest.send import Response

PROBLEM_JSON: Final = "application/problem+json"

#: Sent with 401s, as RFC 6750 asks of bearer-token APIs.
WWW_AUTHENTICATE: Final = 'Bearer realm="taskqueue"'


def problem_type(title: str) -> str:
    """The problem's ``type`` URI, named after its title: ``urn:taskqueue:problem:not-found``.

    A URN, not a URL: it identifies the kind of problem without promising a page to read.
    """
    return "urn:taskqueue:problem:" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def problem_body(error: ApiError) -> dict[str, object]:
    body: dict[str, object] = {
        "type": problem_type(error.title),
        "title": error.title,
        "status": error.http_status,
        "detail": error.detail,
    }
    if error.field is not None:
        body["field"] = error.field
    return body


def problem_response(error: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    """The response for ``error``, with the headers its status calls for."""
    extra = dict(headers or {})
    if error.http_status == 401:
        extra.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if error.http_status in (429, 503):
        extra.setdefault("Retry-After", "1")
    return Response(
        _json.dumps(problem_body(error)),
        status=error.http_status,
        headers=extra,
        content_type=PROBLEM_JSON,
    )
