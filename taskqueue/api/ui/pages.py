"""The dashboard's routes: its pages, their static files, and the login that starts a session.

Every page is the same HTML shell (its script routes by path) served only to a browser with a
valid session when tokens are configured; anyone else is sent to the login page. The shell is
given the session's CSRF token and scope in ``<meta>`` tags, so the script can send the one
and hide the buttons the other does not allow (the REST app refuses such actions anyway).
"""

from __future__ import annotations

import html
import re
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from taskqueue.api.auth import Authenticator, AuthResult
from taskqueue.api.rest.http import Request
from taskqueue.api.rest.send import Response
from taskqueue.api.ui.session import (
    Session,
    clear_cookie,
    new_session,
    read_session,
    set_cookie,
)
from taskqueue.api.ui.static_files import load_static

PREFIX: Final = "/ui"
STATIC: Final = f"{PREFIX}/static/"
#: The paths the shell answers: the script shows the page each names.
_PAGES = re.compile(r"/ui(/|/tasks(/[0-9a-f-]{36})?|/dead-letters|/workers|/schedules|/limits)?")
#: The most a login form may send.
LOGIN_LIMIT: Final = 4096

#: Sent with every page: nothing but the daemon's own scripts, styles and API.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_HTML: Final = "text/html; charset=utf-8"


class Dashboard:
    """Serves ``/``, ``/ui`` and everything under it."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self.static = load_static()

    @staticmethod
    def serves(path: str) -> bool:
        return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")

    @staticmethod
    def route(path: str) -> str:
        """The metrics' route label of ``path``: a few fixed names, whatever the path."""
        if path.startswith(STATIC):
            return STATIC + "{file}"
        return path if path in ("/", f"{PREFIX}/login", f"{PREFIX}/logout") else PREFIX

    async def respond(self, request: Request, path: str) -> Response:
        method = request.method
        if path.startswith(STATIC):
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD")
            return self._static(request, path.removeprefix(STATIC))
        if path == f"{PREFIX}/login":
            if method == "POST":
                return await self._login(request)
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD, POST")
            return self._login_page(request)
        if path == f"{PREFIX}/logout":
            if method != "POST":
                return _not_allowed("POST")
            return self._logout(request)
        if path == "/":
            return _redirect(f"{PREFIX}/")
        if not _PAGES.fullmatch(path):
            return _page_response(self._render("notfound.html"), 404)
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        return self._shell(request)

    # -- pages ------------------------------------------------------------------------------

    def _shell(self, request: Request) -> Response:
        if not self.authenticator.enabled:
            return _page_response(self._render("index.html", scope="admin", csrf="", auth="off"))
        session = self._session(request)
        if session is None:
            return _redirect(f"{PREFIX}/login")
        scope = "admin" if self._check(session.token, write=True) is AuthResult.OK else "read"
        page = self._render("index.html", scope=scope, csrf=session.csrf, auth="on")
        return _page_response(page)

    def _login_page(self, request: Request, error: str = "", status: int = 200) -> Response:
        if not self.authenticator.enabled or self._session(request) is not None:
            return _redirect(f"{PREFIX}/")
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return _page_response(self._render("login.html", error=message), status)

    async def _login(self, request: Request) -> Response:
        if not _same_origin(request):
            return _page_response("cross-site login refused", 403)
        form = parse_qs((await request.body(LOGIN_LIMIT)).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if not self.authenticator.enabled:
            return _redirect(f"{PREFIX}/")
        if not token or self._check(token, write=False) is not AuthResult.OK:
            return self._login_page(request, "That token is not valid here.", 401)
        cookie = set_cookie(new_session(token), secure=_tls(request))
        return _redirect(f"{PREFIX}/", {"Set-Cookie": cookie})

    def _logout(self, request: Request) -> Response:
        if not _same_origin(request):
            return _page_response("cross-site logout refused", 403)
        cookie = clear_cookie(secure=_tls(request))
        return _redirect(f"{PREFIX}/login", {"Set-Cookie": cookie})

    def _static(self, request: Request, name: str) -> Response:
        file = self.static.get(name)
        if file is None or name.endswith(".html"):
            return _page_response(self._render("notfound.html"), 404)
        headers = {"ETag": file.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == file.etag:
            return Response(b"", 304, headers, content_type=file.content_type)
        body = file.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = file.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, 200, {**SECURITY_HEADERS, **headers}, content_type=file.content_type)

    # -- helpers ----------------------------------------------------------------------------

    def _session(self, request: Request) -> Session | None:
        """The request's session, if its token is still valid."""
        session = read_session(request.headers.get("cookie"))
        if session is None or self._check(session.token, write=False) is not AuthResult.OK:
            return None
        return session

    def _check(self, token: str, *, write: bool) -> AuthResult:
        return self.authenticator.check(f"Bearer {token}", write=write)

    def _render(self, name: str, **values: str) -> str:
        text = self.static[name].body.decode()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        return text


def _page_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    extra: dict[str, Any] = {**SECURITY_HEADERS, "Cache-Control": "no-store", **(headers or {})}
    return Response(body, status, extra, content_type=_HTML)


def _redirect(location: str, headers: dict[str, str] | None = None) -> Response:
    return _page_response("", 303, {"Location": location, **(headers or {})})


def _not_allowed(allowed: str) -> Response:
    return _page_response("method not allowed", 405, {"Allow": allowed})


def _tls(request: Request) -> bool:
    return request.scope.get("scheme") == "https"


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from this daemon's own page: the browser says so
    (``Sec-Fetch-Site``), or its ``Origin`` is this host. A request with neither is no
    browser's cross-site post."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")
