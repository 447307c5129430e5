"""One mapping from errors to what the APIs answer: an HTTP status for REST (RFC 9457 problem
details) and the matching gRPC status, so both APIs say the same thing about the same error."""

from __future__ import annotations

import attrs

from taskqueue.api.auth import AuthResult
from taskqueue.errors import (
    ConflictingStateError,
    DurabilityUnsupportedError,
    IdempotencyKeyNotFoundError,
    InvalidTaskError,
    NotDurableError,
    PayloadTooLargeError,
    QueueFullError,
    ScheduleNotFoundError,
    TaskNotFoundError,
    TooManySchedulesError,
    TooManyTypesError,
    UnservedTypeError,
)
from taskqueue.redis import RedisError


@attrs.frozen
class ApiError(Exception):
    """An error as the APIs report it."""

    http_status: int
    grpc_status: str  # a grpclib.const.Status member name, e.g. "NOT_FOUND"
    title: str
    detail: str
    field: str | None = None


def invalid(field: str | None, detail: str) -> ApiError:
    """The 422 for one field (``field`` None: the request as a whole)."""
    where = f"{field}: " if field else ""
    return ApiError(422, "INVALID_ARGUMENT", "Invalid field", f"{where}{detail}", field)


def api_error(exc: Exception) -> ApiError | None:
    """The API form of a known error, or None for an unexpected one (a bug: 500 / INTERNAL)."""
    if isinstance(exc, ApiError):
        return exc
    detail = str(exc)
    if isinstance(exc, PayloadTooLargeError):
        return ApiError(413, "RESOURCE_EXHAUSTED", "Payload too large", detail, exc.field)
    if isinstance(exc, UnservedTypeError):
        return ApiError(422, "FAILED_PRECONDITION", "Unserved task type", detail, exc.field)
    if isinstance(exc, InvalidTaskError):
        return ApiError(422, "INVALID_ARGUMENT", "Invalid field", detail, exc.field)
    if isinstance(exc, TaskNotFoundError | ScheduleNotFoundError | IdempotencyKeyNotFoundError):
        return ApiError(404, "NOT_FOUND", "Not found", detail)
    if isinstance(exc, TooManySchedulesError):
        return ApiError(429, "RESOURCE_EXHAUSTED", "Too many schedules", detail)
    if isinstance(exc, ConflictingStateError):
        return ApiError(409, "FAILED_PRECONDITION", "Conflicting state", detail)
    if isinstance(exc, TooManyTypesError):
        return ApiError(429, "RESOURCE_EXHAUSTED", "Too many task types", detail, "type")
    if isinstance(exc, QueueFullError):
        return ApiError(429, "RESOURCE_EXHAUSTED", "Queue full", detail)
    if isinstance(exc, NotDurableError):
        return ApiError(503, "UNAVAILABLE", "Not confirmed on disk", detail)
    if isinstance(exc, DurabilityUnsupportedError):
        return ApiError(503, "UNAVAILABLE", "Durable submit unavailable", detail)
    if isinstance(exc, RedisError):
        return ApiError(503, "UNAVAILABLE", "Redis unavailable", f"Redis is unreachable: {exc}")
    return None


def auth_error(result: AuthResult) -> ApiError | None:
    """What the APIs answer to a failed token check (None when it passed)."""
    if result is AuthResult.MISSING:
        return ApiError(
            401,
            "UNAUTHENTICATED",
            "Unauthenticated",
            "a bearer token is required: send 'authorization: Bearer <token>'",
        )
    if result is AuthResult.INVALID:
        return ApiError(401, "UNAUTHENTICATED", "Unauthenticated", "unknown bearer token")
    if result is AuthResult.FORBIDDEN:
        return ApiError(
            403, "PERMISSION_DENIED", "Forbidden", "this token may only read; the operation writes"
        )
    return None
