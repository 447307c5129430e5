"""The tracing seams when there is nothing to trace: they do nothing, at little cost."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Final

from taskqueue.models import Submission
from taskqueue.outcomes import Outcome


class Passthrough:
    """A submit without a span: its value is the submissions it was given."""

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


#: :func:`taskqueue.tracing.sending` without OpenTelemetry.
sending = Passthrough


def _ignore(outcome: Outcome) -> None:
    return None


class _Untraced:
    """An attempt without a span: its value records the outcome nowhere."""

    __slots__ = ()

    def __enter__(self) -> Callable[[Outcome], None]:
        return _ignore

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


UNTRACED: Final = _Untraced()
