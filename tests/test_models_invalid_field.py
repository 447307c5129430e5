"""An invalid value's message shows the start of what was given, at the cost of a short one."""

from __future__ import annotations

import pytest

from taskqueue.errors import InvalidTaskError
from taskqueue.models import validated
from taskqueue.wire import SubmissionBatch


class Unshowable:
    """An entry past the shown start: rendering it would fail the test."""

    def __repr__(self) -> str:
        raise AssertionError("rendered an entry that is not shown")


def test_a_batch_past_the_limit_shows_its_start_and_renders_no_more() -> None:
    tasks: list[object] = [{"type": "a"}] * 20 + [Unshowable()] * 150_000
    with pytest.raises(InvalidTaskError) as caught:
        validated({"tasks": tasks}, SubmissionBatch)
    shown = "[{'type': 'a'}, {'type': 'a'}, {'type': 'a'}, {'type': 'a..."
    assert str(caught.value) == f"tasks: Expected array of length <= 1000, not {shown}"


@pytest.mark.parametrize(
    "value",
    [
        [{"type": "a"}] * 1_001,
        list(range(2_000)),
        "x" * 5_000,
        {str(i): i for i in range(1_500)},
        [["x" * 100] * 30] * 1_001,
        [[{"k": list(range(50))}]] * 1_001,
        [1, 2, 3] * 334,
    ],
    ids=["objects", "numbers", "text", "map", "nested-text", "nested-map", "short-entries"],
)
def test_the_start_shown_is_the_start_of_the_values_repr(value: object) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        validated({"tasks": value}, SubmissionBatch)
    assert f"{repr(value)[:57]}..." in str(caught.value), str(caught.value)
