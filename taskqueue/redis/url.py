"""Where and how to connect: one parsed Redis URL."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from taskqueue.numerals import natural

#: URL schemes and what they mean: TCP, TCP with TLS, a unix socket, the primary that Redis
#: Sentinel names (``redis+sentinel://[:password@]host[:port][,host[:port]...]/service[/db]``),
#: a Redis Cluster found from one or more seed nodes
#: (``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]``, ``rediss+cluster``
#: with TLS).
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster")
#: Redis Sentinel's own port, when a sentinel's address names none.
SENTINEL_PORT = 26379
#: Redis's port, when a cluster seed node's address names none.
REDIS_PORT = 6379


@attrs.frozen(kw_only=True)
class RedisAddress:
    """A parsed Redis URL (one of :data:`SCHEMES`) plus explicit overrides."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # unix socket path
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)  # never in logs
    tls: bool = False
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Sentinels to ask where the primary of ``service`` is (then ``host``/``port`` are unused).
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    #: Seed nodes of a Redis Cluster: any one tells the slot map (``host``/``port`` unused).
    cluster: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        db: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisAddress:
        """Parse ``url`` in the syntax redis-py and the Redis docs use
        (``redis://[[user]:password@]host[:port][/db][?db=&password=&ssl_ca_certs=...]``).

        Explicit ``db``, ``username`` and ``password`` win over what the URL says, so a
        password can live in the environment instead of in a URL in a config file.
        """
        try:
            parts = parse_url(url)
            if parts.get("cluster") and db:
                raise ValueError(f"Redis Cluster has only database 0, not {db}")
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {url!r}: {exc}") from None
        return cls(
            host=parts.get("host") or "127.0.0.1",
            port=int(parts.get("port") or 6379),
            path=parts.get("path"),
            db=db if db is not None and db != 0 else int(parts.get("db") or 0),
            username=username or parts.get("username"),
            password=password or parts.get("password"),
            tls=url.startswith(("rediss://", "rediss+cluster://")),
            ssl_ca_certs=parts.get("ssl_ca_certs"),
            ssl_cert_reqs=str(parts.get("ssl_cert_reqs") or "required"),
            ssl_certfile=parts.get("ssl_certfile"),
            ssl_keyfile=parts.get("ssl_keyfile"),
            sentinels=parts.get("sentinels", ()),
            service=parts.get("service"),
            cluster=parts.get("cluster", ()),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ssl_ca_certs)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.ssl_cert_reqs in ("none", "optional"):
            context.check_hostname = False
            context.verify_mode = (
                ssl.CERT_NONE if self.ssl_cert_reqs == "none" else ssl.CERT_OPTIONAL
            )
        return context

    def __str__(self) -> str:
        """The address without secrets, for logs and error messages."""
        if self.cluster:
            seeds = ",".join(f"{host}:{port}" for host, port in self.cluster)
            return f"{'rediss' if self.tls else 'redis'} cluster of {seeds}"
        if self.sentinels:
            via = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"redis primary {self.service!r} of sentinels {via} db={self.db}"
        where = f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{'rediss' if self.tls else 'redis'} {where} db={self.db}"


def parse_url(url: str) -> dict[str, Any]:
    """The parts of a Redis URL, as redis-py's ``parse_url`` finds them.

    Our own, because importing redis-py for this one function costs every command-line start
    about a tenth of a second. Query parameters other than the ones read here are ignored
    (redis-py's connection tuning such as ``socket_timeout`` has no meaning for this client).
    """
    split = urlsplit(url)
    if split.scheme not in SCHEMES:
        raise ValueError(
            "the scheme must be one of redis://, rediss://, unix://, redis+sentinel://, "
            "redis+cluster://, rediss+cluster://"
        )
    if split.scheme == "redis+sentinel":
        return _sentinel_parts(split.netloc, split.path, split.query)
    if split.scheme.endswith("+cluster"):
        return _cluster_parts(split.netloc, split.path, split.query)
    parts: dict[str, Any] = {
        name: values[0] for name, values in parse_qs(split.query).items() if values
    }
    if "db" in parts:
        parts["db"] = _database(parts["db"])
    if split.username:
        parts["username"] = unquote(split.username)
    if split.password:
        parts["password"] = unquote(split.password)
    if split.scheme == "unix":
        if split.path:
            parts["path"] = unquote(split.path)
        return parts
    if split.hostname:
        parts["host"] = unquote(split.hostname)
    if split.port:  # raises ValueError for a port that is not a number in 0-65535
        parts["port"] = split.port
    database = natural(unquote(split.path).replace("/", ""))
    if database is not None and "db" not in parts:
        parts["db"] = database  # as redis-py: a path that is not a number is no database
    return parts


def _sentinel_parts(netloc: str, path: str, query: str) -> dict[str, Any]:
    """``[[user]:password@]host[:port][,host[:port]...]`` and ``/service[/db]``."""
    parts = _multi_host_parts(netloc, query, "sentinel", SENTINEL_PORT)
    parts["sentinels"] = parts.pop("hosts")
    service, _, database = path.strip("/").partition("/")
    if not service:
        raise ValueError("a redis+sentinel:// URL names its service: .../SERVICE[/DB]")
    parts["service"] = unquote(service)
    if database or "db" in parts:
        parts["db"] = _database(database or parts["db"])
    return parts


def _cluster_parts(netloc: str, path: str, query: str) -> dict[str, Any]:
    """``[[user]:password@]host[:port][,host[:port]...]`` and an empty path (or ``/0``)."""
    parts = _multi_host_parts(netloc, query, "cluster seed node", REDIS_PORT)
    parts["cluster"] = parts.pop("hosts")
    database = path.strip("/") or parts.get("db") or "0"
    if _database(database) != 0:
        raise ValueError(f"Redis Cluster has only database 0, not {database!r}")
    parts["db"] = 0
    return parts


def _multi_host_parts(netloc: str, query: str, what: str, default_port: int) -> dict[str, Any]:
    """The query, the credentials and the ``host[:port],...`` list (as ``hosts``) of a URL
    that names several servers."""
    parts: dict[str, Any] = {name: values[0] for name, values in parse_qs(query).items() if values}
    userinfo, _, hosts = netloc.rpartition("@")
    if userinfo:
        username, _, password = userinfo.partition(":")
        if username:
            parts["username"] = unquote(username)
        if password:
            parts["password"] = unquote(password)
    found = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"a {what} address must be host[:port], not {item!r}")
        number = natural(port) if port else default_port
        if number is None or not 0 < number < 65536:
            raise ValueError(f"a {what} port must be a number in 1-65535, not {port!r}")
        found.append((host.strip("[]"), number))
    parts["hosts"] = tuple(found)
    return parts


def _database(text: str) -> int:
    """A database number: ASCII digits only (``int()`` would take "¹" or "1_0")."""
    number = natural(text)
    if number is None:
        raise ValueError(f"the database must be a number, not {text!r}")
    return number
