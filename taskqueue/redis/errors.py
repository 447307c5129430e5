"""Errors of the Redis connection layer."""

from __future__ import annotations


class RedisError(Exception):
    """Base class of every error from the Redis layer."""


class RedisConnectionError(RedisError, ConnectionError):
    """Redis could not be reached, or the connection broke mid-command.

    A command that fails this way may or may not have run on the server; the broker's
    operations are written so that running one twice is safe, or is fenced by an attempt number.
    """


class NotRedisError(RedisConnectionError):
    """What answered at the Redis address does not speak Redis's protocol (a web server, a
    TLS port reached without TLS, ...)."""


class ResponseError(RedisError):
    """Redis answered a command with an error reply (``-ERR ...``)."""


class NoScriptError(ResponseError):
    """``EVALSHA`` named a script the server has not loaded (after a restart or a flush)."""


class AuthenticationError(RedisConnectionError, ResponseError):
    """The server refused the configured username or password."""


def reply_error(message: str) -> ResponseError:
    """The exception for an error reply, by the reply's error code."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith(("WRONGPASS", "NOAUTH")):
        return AuthenticationError(message)
    return ResponseError(message)
