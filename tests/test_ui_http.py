"""The dashboard's server side over plain HTTP: the redirect of ``/``, the login and its
cookie's flags, the session standing in for a token on the API, CSRF refusals, the static
files' caching and headers, and that no page is in the OpenAPI document."""

from __future__ import annotations

import re
import ssl
import tomllib
from pathlib import Path

import httpx
from api_helpers import ADMIN_TOKEN, READ_TOKEN, ApiServer, api_server, make_self_signed_cert
from ui_helpers import token_settings

from taskqueue.api import ui
from taskqueue.api.ui.session import COOKIE, CSRF_HEADER
from taskqueue.models import TaskState

CSRF_META = re.compile(r'<meta name="taskqueue-csrf" content="([0-9a-f]*)">')


async def login(client: httpx.AsyncClient, token: str) -> tuple[httpx.Response, str]:
    """Log in with ``token``; the response and the page's CSRF token."""
    response = await client.post("/ui/login", data={"token": token})
    assert response.status_code == 303, response.text
    page = await client.get("/ui/")
    assert page.status_code == 200
    found = CSRF_META.search(page.text)
    assert found is not None
    return response, found[1]


async def test_root_redirects_and_pages_ask_for_login(redis_url: str, tmp_path: Path) -> None:
    async with (
        api_server(redis_url, **token_settings(tmp_path)) as server,
        server.client() as client,
    ):
        root = await client.get("/")
        assert (root.status_code, root.headers["location"]) == (303, "/ui/")
        pages = ("/ui/tasks", "/ui/dead-letters", "/ui/workers", "/ui/schedules", "/ui/limits")
        for path in ("/ui", "/ui/", *pages):
            page = await client.get(path)
            assert (page.status_code, page.headers["location"]) == (303, "/ui/login"), path
        form = await client.get("/ui/login")
        assert form.status_code == 200
        assert 'name="token"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert (await client.get("/ui/nothing")).status_code == 404
        assert (await client.get("/api/v1/queues")).status_code == 401


async def test_login_sets_a_strict_http_only_cookie(redis_url: str, tmp_path: Path) -> None:
    async with (
        api_server(redis_url, **token_settings(tmp_path)) as server,
        server.client() as client,
    ):
        wrong = await client.post("/ui/login", data={"token": "nope"})
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        assert "set-cookie" not in wrong.headers
        response, csrf = await login(client, ADMIN_TOKEN)
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        flags = {flag.strip().lower() for flag in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
        assert ADMIN_TOKEN not in cookie  # encoded, not in clear
        assert csrf
        # The session stands in for the bearer token on the API.
        assert (await client.get("/api/v1/queues")).status_code == 200
        logout = await client.post("/ui/logout")
        assert logout.status_code == 303
        assert "max-age=0" in logout.headers["set-cookie"].lower()
        assert (await client.get("/api/v1/queues")).status_code == 401


async def test_cookie_is_secure_over_tls(redis_url: str, tmp_path: Path) -> None:
    cert = make_self_signed_cert(tmp_path)
    async with (
        api_server(redis_url, cert=cert, **token_settings(tmp_path)) as server,
        httpx.AsyncClient(
            base_url=server.url, verify=ssl.create_default_context(cafile=cert[0])
        ) as client,
    ):
        response = await client.post("/ui/login", data={"token": ADMIN_TOKEN})
        assert response.status_code == 303
        assert "; Secure" in response.headers["set-cookie"]


async def test_writes_with_the_session_need_its_csrf_token(redis_url: str, tmp_path: Path) -> None:
    async with api_server(redis_url, **token_settings(tmp_path)) as server:
        requeue = "/api/v1/dead-letters/requeue"
        async with server.client() as admin:
            _, csrf = await login(admin, ADMIN_TOKEN)
            missing = await admin.post(requeue)
            assert missing.status_code == 403
            assert "X-CSRF-Token" in missing.json()["detail"]
            assert (await admin.post(requeue, headers={CSRF_HEADER: "0" * 64})).status_code == 403
            assert (await admin.post(requeue, headers={CSRF_HEADER: csrf})).status_code == 200
            # The limits page's PUT of a JSON body, and the schedules page's pause.
            limits = "/api/v1/policy/report.build", {"rate_limit": "5/s"}
            assert (await admin.put(limits[0], json=limits[1])).status_code == 403
            put = await admin.put(limits[0], json=limits[1], headers={CSRF_HEADER: csrf})
            assert (put.status_code, put.json()["live"]) == (200, {"rate_limit": "5/s"})
            spec = {"type": "echo", "every": 60}
            await admin.put("/api/v1/schedules/beat", json=spec, headers={CSRF_HEADER: csrf})
            pause = "/api/v1/schedules/beat/pause"
            assert (await admin.post(pause)).status_code == 403
            assert (await admin.post(pause, headers={CSRF_HEADER: csrf})).json()["paused"]
        async with server.client() as reader:
            _, csrf = await login(reader, READ_TOKEN)
            assert 'content="read"' in (await reader.get("/ui/")).text
            assert (await reader.get("/api/v1/dead-letters")).status_code == 200
            forged = await reader.post(requeue, headers={CSRF_HEADER: csrf})
            assert forged.status_code == 403
        # A bearer token needs no CSRF token: it is no ambient credential.
        async with server.client(token=ADMIN_TOKEN) as bearer:
            assert (await bearer.post(requeue)).status_code == 200


async def test_cross_site_login_is_refused(redis_url: str, tmp_path: Path) -> None:
    async with (
        api_server(redis_url, **token_settings(tmp_path)) as server,
        server.client() as client,
    ):
        headers = {"Sec-Fetch-Site": "cross-site"}
        response = await client.post("/ui/login", data={"token": ADMIN_TOKEN}, headers=headers)
        assert response.status_code == 403
        headers = {"Origin": "https://evil.example"}
        response = await client.post("/ui/login", data={"token": ADMIN_TOKEN}, headers=headers)
        assert response.status_code == 403


async def test_without_tokens_the_dashboard_is_open(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        page = await client.get("/ui/")
        assert page.status_code == 200
        assert 'name="taskqueue-scope" content="admin"' in page.text
        assert (await client.get("/ui/login")).headers["location"] == "/ui/"


async def test_static_files_are_cached_and_compressed(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        script = await client.get("/ui/static/app.js", headers={"Accept-Encoding": "gzip"})
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["content-encoding"] == "gzip"
        assert script.headers["x-content-type-options"] == "nosniff"
        etag = {"If-None-Match": script.headers["etag"]}
        again = await client.get("/ui/static/app.js", headers=etag)
        assert again.status_code == 304
        assert (await client.get("/ui/static/nothing.js")).status_code == 404
        assert (await client.get("/ui/static/index.html")).status_code == 404
        assert (await client.post("/ui/static/app.js")).status_code == 405


async def test_pages_are_not_in_the_openapi_document(redis_url: str, tmp_path: Path) -> None:
    async with api_server(redis_url, **token_settings(tmp_path)) as server:
        await check_document(server)


async def check_document(server: ApiServer) -> None:
    async with server.client() as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    paths = list(document["paths"])
    assert paths, "the document lists the API's operations"
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def test_the_static_files_are_package_data() -> None:
    """Every file the dashboard serves is matched by pyproject's package-data glob (so it is in
    the wheel): the glob takes static/'s files, and static/ has no subdirectory."""
    root = Path(__file__).resolve().parent.parent
    static = root / "taskqueue" / "api" / "ui" / "static"
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert "api/ui/static/*" in pyproject["tool"]["setuptools"]["package-data"]["taskqueue"]
    entries = list(static.iterdir())
    assert {"index.html", "login.html", "app.js", "style.css"} <= {e.name for e in entries}
    assert all(entry.is_file() for entry in entries)


def test_the_dashboard_knows_every_task_state() -> None:
    """dom.js lists the states for the state cards and the listing's filter: the same as the
    model's, in its order (a new state must show there too)."""
    script = (Path(ui.__file__).parent / "static" / "dom.js").read_text()
    listed = re.search(r"export const TASK_STATES = \[([^\]]*)\]", script)
    assert listed is not None
    assert re.findall(r'"([a-z]+)"', listed.group(1)) == [s.value for s in TaskState]
