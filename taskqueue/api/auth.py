"""Bearer-token authentication, shared by REST (``Authorization`` header) and gRPC (metadata).

Tokens come from ``server.tokens`` (full access) and from ``server.token_file``: one token per
line as ``<sha256 hex of the token> [scope]``, where scope is ``admin`` (the default: every
operation) or ``read`` (only reads: a read token on a write operation is refused with 403 /
PERMISSION_DENIED). Only hashes are kept in memory, and tokens are compared by their SHA-256 in
constant time, so neither a timing nor a memory dump leaks a token.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from pathlib import Path

import attrs

from taskqueue.config import ServerConfig
from taskqueue.errors import ConfigError


class Scope(enum.StrEnum):
    ADMIN = "admin"
    READ = "read"


class AuthResult(enum.Enum):
    OK = "ok"
    MISSING = "missing"  # no credentials: 401 / UNAUTHENTICATED
    INVALID = "invalid"  # unknown token: 401 / UNAUTHENTICATED
    FORBIDDEN = "forbidden"  # a valid token without the scope: 403 / PERMISSION_DENIED


@attrs.frozen
class Authenticator:
    """Checks bearer tokens; with no token configured, everything is allowed."""

    hashes: tuple[tuple[bytes, Scope], ...] = ()

    @classmethod
    def from_config(cls, server: ServerConfig) -> Authenticator:
        hashes = [(_digest(token), Scope.ADMIN) for token in server.tokens]
        if server.token_file:
            hashes += _read_token_file(server.token_file)
        return cls(tuple(hashes))

    @property
    def enabled(self) -> bool:
        return bool(self.hashes)

    def check(self, authorization: str | None, *, write: bool) -> AuthResult:
        """Judge an ``Authorization`` header value (``Bearer <token>``) for a read or write."""
        if not self.enabled:
            return AuthResult.OK
        if not authorization:
            return AuthResult.MISSING
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return AuthResult.INVALID
        digest = _digest(token.strip())
        scope: Scope | None = None
        for known, known_scope in self.hashes:  # no early exit: same time for every token
            if hmac.compare_digest(known, digest):
                scope = known_scope
        if scope is None:
            return AuthResult.INVALID
        if write and scope is not Scope.ADMIN:
            return AuthResult.FORBIDDEN
        return AuthResult.OK


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def hash_token(token: str) -> str:
    """The line to put in a token file for ``token`` (what ``taskqueue`` operators store)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _read_token_file(path: str) -> list[tuple[bytes, Scope]]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"server.token_file = {path!r}: cannot read it: {exc.strerror}") from None
    hashes = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        digest, _, scope = text.partition(" ")
        try:
            hashes.append((bytes.fromhex(digest), Scope(scope.strip() or "admin")))
        except ValueError:
            raise ConfigError(
                f"server.token_file {path}, line {number}: expected '<sha256 hex> [admin|read]'"
            ) from None
        if len(hashes[-1][0]) != 32:
            raise ConfigError(f"server.token_file {path}, line {number}: not a SHA-256 hex digest")
    return hashes
