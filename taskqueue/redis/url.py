"""Where and how to connect: one parsed Redis URL."""

from __future__ import annotations

import ssl

import attrs
from redis.connection import parse_url


@attrs.frozen(kw_only=True)
class RedisAddress:
    """A parsed ``redis://``, ``rediss://`` or ``unix://`` URL plus explicit overrides."""

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

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        db: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisAddress:
        """Parse ``url`` (redis-py's parser, so the syntax is the familiar one).

        Explicit ``db``, ``username`` and ``password`` win over what the URL says, so a
        password can live in the environment instead of in a URL in a config file.
        """
        try:
            parts = parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {url!r}: {exc}") from None
        return cls(
            host=parts.get("host") or "127.0.0.1",
            port=int(parts.get("port") or 6379),
            path=parts.get("path"),
            db=db if db is not None and db != 0 else int(parts.get("db") or 0),
            username=username or parts.get("username"),
            password=password or parts.get("password"),
            tls=url.startswith("rediss://"),
            ssl_ca_certs=parts.get("ssl_ca_certs"),
            ssl_cert_reqs=str(parts.get("ssl_cert_reqs") or "required"),
            ssl_certfile=parts.get("ssl_certfile"),
            ssl_keyfile=parts.get("ssl_keyfile"),
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
        where = f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{'rediss' if self.tls else 'redis'} {where} db={self.db}"
