"""The tracing seams when OpenTelemetry is not installed: they do nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType

from taskqueue.models import Submission


class sending:
    """Hands the submissions back as they are."""

    __slots__ = ("_submissions",)

    def __init__(
        self,
        submissions: Sequence[Submission],
        incoming: Callable[[str], str | None] | None = None,
    ) -> None:
        self._submissions = submissions

    def __enter__(self) -> Sequence[Submission]:
        return self._submissions

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
