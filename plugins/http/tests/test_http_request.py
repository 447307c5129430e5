"""http.request against a real HTTP server on 127.0.0.1 (so most tests allow private networks)."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import pytest
import taskqueue_plugin_http
import trio
from taskqueue_plugin_http import (
    TASK_TYPE,
    DestinationNotAllowedError,
    HttpRequestError,
    HttpRequestSpec,
    RequestTimeoutError,
    ResponseTooLargeError,
    UnexpectedStatusError,
)
from taskqueue_plugin_http.addresses import AddressPolicy, IPAddress
from taskqueue_plugin_http.settings import HttpSettings
from taskqueue_plugin_http.transport import GuardedBackend, Resolver

from taskqueue.config.plugins import parse_plugin_settings
from taskqueue.errors import ConfigError, InvalidPayloadError, PermanentError
from taskqueue.payloads import decode_payload
from taskqueue.plugin import ProcessorRegistry
from taskqueue.processors import load_plugins
from taskqueue.testing import plugin_registry, run_processor


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _route(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts[0] == "text":
            self._send(200, "héllo wörld".encode(), "text/plain; charset=utf-8")
        elif parts[0] == "echo":
            echoed = {
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self._send(200, json.dumps(echoed).encode(), "application/json")
        elif parts[0] == "status":
            self._send(int(parts[1]), f"status {parts[1]} says no".encode(), "text/plain")
        elif parts[0] == "redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts[0] == "bytes":
            self._send(200, b"x" * int(parts[1]), "application/octet-stream")
        elif parts[0] == "stream":
            # HTTP/1.0 style: no Content-Length, the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for _ in range(int(parts[1])):
                self.wfile.write(b"y" * 1024)
        elif parts[0] == "slow":
            self.server.release.wait(10)
            self._send(200, b"late", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _route


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self.release = threading.Event()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def url_of(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def parse_settings(table: dict[str, Any]) -> HttpSettings:
    """``table`` as the daemon reads ``[plugins.http]``."""
    return parse_plugin_settings(HttpSettings, "http", table)


def registry(**settings: Any) -> ProcessorRegistry:
    """http.request as the daemon registers it, private networks allowed (the test server is
    on 127.0.0.1), with ``settings`` as the rest of ``[plugins.http]``."""
    return strict_registry(allow_private_networks=True, **settings)


def strict_registry(**settings: Any) -> ProcessorRegistry:
    """http.request with ``settings`` and the defaults otherwise: private networks refused."""
    return plugin_registry(taskqueue_plugin_http, name="http", settings=settings)


async def request(
    payload: Any, registered: ProcessorRegistry | None = None, **settings: Any
) -> dict[str, Any]:
    """The result of one http.request task, run as a worker runs it."""
    done = await run_processor(registered or registry(**settings), TASK_TYPE, payload)
    result: dict[str, Any] = done.value
    return result


# --- requests and results --------------------------------------------------------------------


async def test_get_returns_status_some_headers_text_body_and_elapsed_time(server: _Server) -> None:
    result = await request({"method": "GET", "url": url_of(server, "/text")})
    assert result["status"] == 200
    assert result["body"] == "héllo wörld"
    assert result["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert "server" not in result["headers"]
    assert result["body_truncated"] is False
    assert result["redirects"] == 0
    assert isinstance(result["elapsed_ms"], int)
    json.dumps(result)  # a task result must be JSON-serialisable


async def test_default_method_is_post_and_body_is_sent_as_is(server: _Server) -> None:
    payload = {"url": url_of(server, "/echo"), "body": "plain text", "headers": {"X-A": "1"}}
    echoed = json.loads((await request(payload))["body"])
    assert echoed["method"] == "POST"
    assert echoed["body"] == "plain text"
    assert echoed["headers"]["x-a"] == "1"


async def test_json_payload_is_encoded_with_a_json_content_type(server: _Server) -> None:
    payload = {"method": "PUT", "url": url_of(server, "/echo"), "json": {"a": [1, "é"]}}
    echoed = json.loads((await request(payload))["body"])
    assert echoed["method"] == "PUT"
    assert json.loads(echoed["body"]) == {"a": [1, "é"]}
    assert echoed["headers"]["content-type"] == "application/json"


async def test_status_outside_expected_fails_with_status_and_body_excerpt(server: _Server) -> None:
    with pytest.raises(UnexpectedStatusError) as info:
        await request({"url": url_of(server, "/status/503")})
    assert info.value.status == 503
    assert "503" in str(info.value) and "200-299" in str(info.value)
    assert "status 503 says no" in str(info.value)


async def test_expected_status_accepts_the_listed_codes_only(server: _Server) -> None:
    ok = {"url": url_of(server, "/status/404"), "expected_status": [404, 410]}
    assert (await request(ok))["status"] == 404
    with pytest.raises(UnexpectedStatusError, match="expected 404"):
        await request({**ok, "url": url_of(server, "/text"), "expected_status": [404]})


# --- redirects ---------------------------------------------------------------------------------


async def test_redirects_are_not_followed_unless_asked(server: _Server) -> None:
    payload = {"method": "GET", "url": url_of(server, "/redirect?to=/text")}
    with pytest.raises(UnexpectedStatusError) as info:
        await request(payload)
    assert info.value.status == 302
    result = await request({**payload, "expected_status": [302]})
    assert result["headers"]["location"] == "/text"


async def test_redirects_are_followed_when_asked(server: _Server) -> None:
    payload = {
        "method": "GET",
        "url": url_of(server, "/redirect?to=/text"),
        "follow_redirects": True,
    }
    result = await request(payload)
    assert (result["status"], result["body"], result["redirects"]) == (200, "héllo wörld", 1)
    assert result["url"] == url_of(server, "/text")


async def test_every_redirect_hop_is_checked_against_the_address_policy(server: _Server) -> None:
    # 127.0.0.1 (the server) is allowed explicitly; the redirect points at 127.0.0.2.
    port = server.server_address[1]
    payload = {
        "method": "GET",
        "url": url_of(server, f"/redirect?to=http://127.0.0.2:{port}/text"),
        "follow_redirects": True,
    }
    with pytest.raises(DestinationNotAllowedError) as info:
        await request(payload, strict_registry(allowed_networks=["127.0.0.1/32"]))
    assert info.value.address == "127.0.0.2"
    assert info.value.reason == "loopback"
    assert server.requests == [f"GET /redirect?to=http://127.0.0.2:{port}/text"]


async def test_too_many_redirects_fail_the_attempt(server: _Server) -> None:
    loop = url_of(server, "/redirect?to=" + url_of(server, "/redirect?to=/text"))
    payload = {"method": "GET", "url": loop, "follow_redirects": True}
    with pytest.raises(HttpRequestError, match=r"[Rr]edirect"):
        await request(payload, max_redirects=1)


# --- address policy ----------------------------------------------------------------------------


async def test_loopback_is_refused_by_default_before_anything_is_sent(server: _Server) -> None:
    with pytest.raises(DestinationNotAllowedError) as info:
        await request({"url": url_of(server, "/echo")}, strict_registry())
    assert info.value.reason == "loopback"
    assert info.value.field == "url"
    assert "allow_private_networks" in str(info.value)
    assert server.requests == []


async def test_a_name_is_judged_by_the_address_it_resolves_to(server: _Server) -> None:
    port = server.server_address[1]
    with pytest.raises(DestinationNotAllowedError, match="loopback"):
        await request({"url": f"http://localhost:{port}/echo"}, strict_registry())
    assert server.requests == []


async def test_ipv4_mapped_ipv6_loopback_is_refused(server: _Server) -> None:
    port = server.server_address[1]
    with pytest.raises(DestinationNotAllowedError, match="loopback"):
        await request({"url": f"http://[::ffff:127.0.0.1]:{port}/"}, strict_registry())


class _RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the real network: records where it was asked to connect, then fails."""

    def __init__(self) -> None:
        self.connects: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append(host)
        raise httpcore.ConnectError("no network in tests")


def _resolver(*answers: list[str]) -> tuple[list[str], Resolver]:
    asked: list[str] = []
    remaining = list(answers)

    async def resolve(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return [ipaddress.ip_address(a) for a in remaining.pop(0)]

    return asked, resolve


async def test_the_checked_address_is_the_one_connected_to() -> None:
    # A name that answers a public address, then loopback (DNS rebinding), is resolved once:
    # the connection goes to the address that was checked, not to a second answer.
    asked, rebinding = _resolver(["93.184.216.34"], ["127.0.0.1"])
    network = _RecordingBackend()
    backend = GuardedBackend(AddressPolicy(), inner=network, resolver=rebinding)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("rebind.example", 80)
    assert asked == ["rebind.example"]
    assert network.connects == ["93.184.216.34"]


async def test_a_name_with_any_refused_address_is_refused_as_a_whole() -> None:
    _, mixed = _resolver(["93.184.216.34", "10.0.0.7"])
    network = _RecordingBackend()
    backend = GuardedBackend(AddressPolicy(), inner=network, resolver=mixed)
    with pytest.raises(DestinationNotAllowedError, match=r"10\.0\.0\.7"):
        await backend.connect_tcp("mixed.example", 443)
    assert network.connects == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "loopback (embedded in ::ffff:7f00:1)"),
        ("::ffff:10.0.0.1", "private (embedded in ::ffff:a00:1)"),
        ("2002:7f00:1::", "loopback (embedded in 2002:7f00:1::)"),
        ("64:ff9b::a9fe:a9fe", "link-local (embedded in 64:ff9b::a9fe:a9fe)"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_only_public_unicast_addresses_are_allowed_by_default(
    address: str, reason: str | None
) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) == reason


def test_allowed_networks_open_only_the_listed_ranges() -> None:
    policy = parse_settings({"allowed_networks": ["10.1.2.0/24"]}).policy
    assert policy.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("10.1.3.1")) == "private"


# --- response size and time --------------------------------------------------------------------


async def test_a_response_declared_larger_than_the_cap_is_not_read(server: _Server) -> None:
    with pytest.raises(ResponseTooLargeError, match="max_response_bytes=1000"):
        await request({"url": url_of(server, "/bytes/5000")}, max_response_bytes=1000)


async def test_a_streamed_response_is_cut_off_past_the_cap(server: _Server) -> None:
    with pytest.raises(ResponseTooLargeError, match="stopped reading"):
        await request({"url": url_of(server, "/stream/1000")}, max_response_bytes=10_000)


async def test_the_body_in_the_result_is_truncated_and_marked(server: _Server) -> None:
    result = await request({"url": url_of(server, "/bytes/5000")}, result_body_bytes=100)
    assert result["body"] == "x" * 100
    assert result["body_truncated"] is True
    assert result["body_bytes"] == 5000


async def test_payload_timeout_fails_the_attempt(server: _Server) -> None:
    start = time.monotonic()
    with pytest.raises(RequestTimeoutError, match=r"timeout=0\.3s"):
        await request({"url": url_of(server, "/slow"), "timeout": 0.3})
    assert time.monotonic() - start < 3


async def test_cancellation_of_the_task_stops_the_request(server: _Server) -> None:
    start = time.monotonic()
    with trio.move_on_after(0.3) as scope:
        await request({"url": url_of(server, "/slow")})
    assert scope.cancelled_caught
    assert time.monotonic() - start < 3


# --- the payload -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "url", "this field is required"),
        ({"url": 5}, "url", "Expected str, got int (5)"),
        ({"url": "ftp://example.com/"}, "url", "scheme must be http or https, got 'ftp' in"),
        ({"url": "http:///path"}, "url", "'http:///path' has no host"),
        ({"url": "http://[::1"}, "url", "'http://[::1' is not a valid URL"),
        ({"url": "https://e.com/" + "a" * 8192}, "url", "Expected str of length <= 8192"),
        ({"url": "https://e.com", "method": "TRACE"}, "method", "expected one of DELETE, GET"),
        ({"url": "https://e.com", "headers": ["X"]}, "headers", "Expected object, got array"),
        ({"url": "https://e.com", "headers": {"X Y": "1"}}, "headers", "not a valid header name"),
        ({"url": "https://e.com", "headers": {"Host": "x"}}, "headers", "set by the HTTP client"),
        ({"url": "https://e.com", "headers": {"X": "a\r\nB: c"}}, "headers", "a line break"),
        ({"url": "https://e.com", "headers": {"X": 1}}, "headers", "Expected str, got int"),
        ({"url": "https://e.com", "body": "a", "json": {}}, "body", "not both"),
        ({"url": "https://e.com", "body": "a", "json": None}, "body", "not both"),
        ({"url": "https://e.com", "body": {"a": 1}}, "body", "Expected str | null, got object"),
        ({"url": "https://e.com", "json": float("nan")}, "json", "cannot be encoded as JSON"),
        ({"url": "https://e.com", "expected_status": 200}, "expected_status", "Expected array"),
        ({"url": "https://e.com", "expected_status": []}, "expected_status", "length >= 1"),
        ({"url": "https://e.com", "expected_status": [99]}, "expected_status.0", "int >= 100"),
        ({"url": "https://e.com", "expected_status": [600]}, "expected_status.0", "int <= 599"),
        ({"url": "https://e.com", "expected_status": [True]}, "expected_status.0", "got bool"),
        ({"url": "https://e.com", "timeout": -1}, "timeout", "Expected float > 0.0, not -1"),
        ({"url": "https://e.com", "timeout": 0}, "timeout", "Expected float > 0.0, not 0"),
        ({"url": "https://e.com", "timeout": "5"}, "timeout", "Expected float | null, got str"),
        ({"url": "https://e.com", "timeout": float("inf")}, "timeout", "a finite number"),
        ({"url": "https://e.com", "follow_redirects": "yes"}, "follow_redirects", "Expected bool"),
        ({"url": "https://e.com", "retries": 3}, "retries", "unknown field; expected one of url"),
    ],
)
def test_invalid_payloads_are_refused_naming_the_field(
    payload: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        decode_payload(HttpRequestSpec, payload)
    assert info.value.field == field
    assert str(info.value).startswith(f"payload.{field}: ")
    assert message in str(info.value)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidPayloadError, match=r"^payload: Expected object, got array"):
        decode_payload(HttpRequestSpec, ["https://e.com"])


async def test_a_bad_payload_fails_for_good_before_any_request(server: _Server) -> None:
    # Registered as the payload: rejected without retries, and nothing is sent.
    with pytest.raises(InvalidPayloadError, match=r"^payload\.method: expected one of") as info:
        await request({"url": url_of(server, "/echo"), "method": "TRACE"})
    assert isinstance(info.value, PermanentError)
    assert server.requests == []


def test_a_valid_payload_is_normalised_and_keeps_its_defaults() -> None:
    spec = decode_payload(HttpRequestSpec, {"url": "https://e.com/x", "method": "get"})
    assert (spec.method, spec.follow_redirects, spec.timeout) == ("GET", False, None)
    assert (spec.content, spec.request_headers, spec.describe_expected()) == (None, (), "200-299")
    spec = decode_payload(HttpRequestSpec, {"url": "https://e.com", "expected_status": [201, 200]})
    assert spec.is_expected(201) and not spec.is_expected(202)
    assert spec.describe_expected() == "200-201"


def test_a_json_body_sets_the_content_type_unless_the_headers_do() -> None:
    spec = decode_payload(HttpRequestSpec, {"url": "https://e.com", "json": None})
    assert spec.content == b"null"  # json: null is a body, unlike no json at all
    assert spec.request_headers == (("Content-Type", "application/json"),)
    own = {"url": "https://e.com", "json": {"é": 1}, "headers": {"content-type": "text/x"}}
    spec = decode_payload(HttpRequestSpec, own)
    assert spec.content == '{"é":1}'.encode()
    assert spec.request_headers == (("content-type", "text/x"),)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"allow_private_network": True},
            "plugins.http.allow_private_network: unknown setting; "
            "did you mean plugins.http.allow_private_networks?",
        ),
        (
            {"allow_private_networks": "yes"},
            'plugins.http.allow_private_networks = "yes": expected true or false',
        ),
        ({"max_response_bytes": 0}, "plugins.http.max_response_bytes = 0: expected a size"),
        (
            {"allowed_networks": ["10.0.0.0/33"]},
            'plugins.http.allowed_networks = ["10.0.0.0/33"]: expected a list of networks',
        ),
        ({"timeout": -5}, "plugins.http.timeout = -5: expected a duration"),
    ],
)
def test_bad_settings_stop_registration_naming_the_key(
    settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(settings)
    assert str(caught.value).startswith(words)


def test_sizes_and_durations_are_read_in_units() -> None:
    settings = parse_settings({"max_response_bytes": "256KiB", "timeout": "1m30s"})
    assert (settings.max_response_bytes, settings.timeout) == (256 * 1024, 90.0)
    assert HttpSettings().allow_private_networks is False  # safe by default


# --- the plugin as the daemon loads it ---------------------------------------------------------


async def test_the_entry_point_registers_http_request_with_its_settings(server: _Server) -> None:
    loaded = load_plugins(
        settings={"http": {"allow_private_networks": True, "timeout": 12}}, skip_broken=True
    )
    assert TASK_TYPE in loaded.registry, (
        "http.request is not registered: run `pip install -e plugins/http` first"
    )
    spec = loaded.registry[TASK_TYPE]
    assert spec.plugin == "http"
    assert spec.is_async
    assert spec.timeout == 12
    result = (
        await run_processor(
            loaded.registry, TASK_TYPE, {"method": "GET", "url": url_of(server, "/text")}
        )
    ).value
    assert result["status"] == 200
