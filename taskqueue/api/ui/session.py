"""The dashboard's session: an API token kept in an HttpOnly cookie, and its CSRF token.

The cookie holds a random nonce and the token itself, so any daemon that knows the token
(every one sharing the configuration) accepts it, and nothing is stored server-side. Scripts
cannot read it (HttpOnly) and other sites cannot send it (SameSite=Strict). Every write made
with it must also carry the session's CSRF token in the ``X-CSRF-Token`` header: an HMAC of
the nonce keyed by the token, which the dashboard's page is given when it loads and which
cannot be computed without the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from http.cookies import CookieError, SimpleCookie
from typing import Final

import attrs

COOKIE: Final = "taskqueue_session"
CSRF_HEADER: Final = "x-csrf-token"
#: How long a browser keeps the session (seconds): the token is entered once a month at most.
MAX_AGE: Final = 30 * 86400


@attrs.frozen
class Session:
    nonce: str
    token: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value this session stands for."""
        return f"Bearer {self.token}"

    @property
    def csrf(self) -> str:
        key = hashlib.sha256(self.token.encode()).digest()
        return hmac.new(key, self.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    @property
    def cookie_value(self) -> str:
        encoded = base64.urlsafe_b64encode(self.token.encode()).decode().rstrip("=")
        return f"{self.nonce}.{encoded}"


def new_session(token: str) -> Session:
    return Session(secrets.token_hex(16), token)


def read_session(cookie_header: str | None) -> Session | None:
    """The session the request's ``Cookie`` header carries, if any (not yet checked)."""
    if not cookie_header or COOKIE not in cookie_header:
        return None
    try:
        morsel = SimpleCookie(cookie_header).get(COOKIE)
    except CookieError:
        return None
    if morsel is None:
        return None
    nonce, _, encoded = morsel.value.partition(".")
    try:
        token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not nonce or not token:
        return None
    return Session(nonce, token)


def set_cookie(session: Session, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that starts ``session``."""
    return _cookie(session.cookie_value, MAX_AGE, secure)


def clear_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that ends the session."""
    return _cookie("", 0, secure)


def _cookie(value: str, max_age: int, secure: bool) -> str:
    # Path=/: the cookie is the dashboard's credential for /api/v1 as well as for /ui.
    flags = f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return flags + "; Secure" if secure else flags
