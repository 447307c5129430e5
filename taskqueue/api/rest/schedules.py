"""``/api/v1/schedules``: periodic tasks, defined, read, paused and deleted at run time.

A definition is checked as the config file's ``[[schedules]]`` are (:func:`schedule_spec`):
`every` is in seconds here, `cron` is read in `timezone`. PUT creates or replaces a schedule by
name and keeps its state (last run, counts, paused); POST only creates.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from taskqueue.api.rest.inputs import NonEmpty, PageSize
from taskqueue.api.rest.routing import (
    API_PREFIX,
    Access,
    Call,
    Operation,
    Param,
    Reply,
    RouteTable,
    json_response,
)
from taskqueue.api.rest.send import Response
from taskqueue.errors import InvalidTaskError
from taskqueue.models import DEFAULT_PAGE, MAX_PAGE
from taskqueue.schedules import ScheduleSpec, schedule_name, schedule_spec
from taskqueue.schedules.model import ONE_TIMING, ScheduleName
from taskqueue.wire import Schedule, SchedulePage, schedule_document

routes = RouteTable()

NAME = Param("name", ScheduleName, "The schedule's name.", required=True)
LIMIT = Param("limit", PageSize, f"Page size (at most {MAX_PAGE}).", default=DEFAULT_PAGE)
_NOT_FOUND = "No schedule has this name."
_BAD_NAME = "The path's name is not a schedule name."
_INVALID = "A field of the definition is invalid; `field` names it."


def _name(call: Call) -> str:
    """The path's name, checked as a definition's would be (the URL map matches any segment)."""
    return schedule_name(call.path["name"])


class ScheduleBody(ScheduleSpec, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A definition put at its own URL: `name` may be left out (the path names it)."""

    name: ScheduleName | None = None  # type: ignore[assignment]


def _checked(body: ScheduleSpec | ScheduleBody, name: str | None = None) -> ScheduleSpec:
    """The body, with the checks msgspec's schema cannot make (cron, time zone, one of two);
    ``name`` is the path's, which a body's own must match."""
    data = msgspec.to_builtins(body)
    if name is not None and data.setdefault("name", name) != name:
        raise InvalidTaskError(
            f"name: the body names {data['name']!r}, the path {name!r}", field="name"
        )
    return schedule_spec(data)


async def _document(
    call: Call, name: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    broker = call.api.context.broker
    schedule = await broker.schedule(name)
    return json_response(schedule_document(schedule, broker.clock()), status, headers)


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/schedules",
        operation_id="listSchedules",
        summary="List the schedules",
        description="By name, a page at a time.",
        tag="schedules",
        access=Access.READ,
        query=(
            LIMIT,
            Param(
                "cursor", NonEmpty, "The `next_cursor` of the previous page; omit for the first."
            ),
        ),
        replies={200: Reply("A page of schedules.", SchedulePage)},
    )
)
async def list_schedules(call: Call) -> Response:
    broker = call.api.context.broker
    page = await broker.schedules(cursor=call.query.get("cursor"), limit=call.query["limit"])
    now = broker.clock()
    return json_response(
        SchedulePage(
            schedules=[schedule_document(s, now) for s in page.items],
            next_cursor=page.next_cursor,
        )
    )


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/schedules",
        operation_id="createSchedule",
        summary="Create a schedule",
        description="Fails with 409 if a schedule has the name (PUT replaces one).",
        tag="schedules",
        access=Access.WRITE,
        body=Annotated[ScheduleSpec, ONE_TIMING],
        replies={201: Reply("The new schedule.", Schedule, headers={"Location": "Its URL."})},
        errors={
            409: "A schedule has this name.",
            422: _INVALID,
            429: "The namespace holds as many schedules as it may.",
        },
    )
)
async def create_schedule(call: Call) -> Response:
    spec = _checked(call.body)
    await call.api.context.broker.put_schedule(spec, create_only=True)
    return await _document(
        call, spec.name, 201, headers={"Location": f"{API_PREFIX}/schedules/{spec.name}"}
    )


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/schedules/{{name}}",
        operation_id="getSchedule",
        summary="Get a schedule",
        tag="schedules",
        access=Access.READ,
        path_params=(NAME,),
        replies={200: Reply("The schedule.", Schedule)},
        errors={404: _NOT_FOUND, 422: _BAD_NAME},
    )
)
async def get_schedule(call: Call) -> Response:
    return await _document(call, _name(call))


@routes.add(
    Operation(
        method="PUT",
        path=f"{API_PREFIX}/schedules/{{name}}",
        operation_id="putSchedule",
        summary="Create or replace a schedule",
        description="The body's `name` may be left out, or must be the path's. A replaced "
        "schedule keeps its "
        "state and stays paused if it was; its next run follows the new definition (an "
        "unchanged definition keeps its next run).",
        tag="schedules",
        access=Access.WRITE,
        path_params=(NAME,),
        body=Annotated[ScheduleBody, ONE_TIMING],
        replies={
            200: Reply("The schedule, replaced (or unchanged).", Schedule),
            201: Reply("The schedule, created.", Schedule),
        },
        errors={422: _INVALID, 429: "The namespace holds as many schedules as it may."},
    )
)
async def put_schedule(call: Call) -> Response:
    name = _name(call)
    spec = _checked(call.body, name)
    outcome = await call.api.context.broker.put_schedule(spec)
    return await _document(call, name, 201 if outcome == "created" else 200)


def _pause_operation(paused: bool) -> Operation:
    verb = "pause" if paused else "resume"
    return Operation(
        method="POST",
        path=f"{API_PREFIX}/schedules/{{name}}/{verb}",
        operation_id=f"{verb}Schedule",
        summary=f"{verb.capitalize()} a schedule",
        description="It fires no more until resumed; a paused schedule keeps its state."
        if paused
        else "It fires again from its next tick after now (the ticks passed while paused "
        "are not made up).",
        tag="schedules",
        access=Access.WRITE,
        path_params=(NAME,),
        replies={200: Reply("The schedule, as it is now.", Schedule)},
        errors={404: _NOT_FOUND, 422: _BAD_NAME},
    )


@routes.add(_pause_operation(True))
async def pause_schedule(call: Call) -> Response:
    name = _name(call)
    await call.api.context.broker.pause_schedule(name)
    return await _document(call, name)


@routes.add(_pause_operation(False))
async def resume_schedule(call: Call) -> Response:
    name = _name(call)
    await call.api.context.broker.pause_schedule(name, paused=False)
    return await _document(call, name)


@routes.add(
    Operation(
        method="DELETE",
        path=f"{API_PREFIX}/schedules/{{name}}",
        operation_id="deleteSchedule",
        summary="Delete a schedule",
        description="The tasks it submitted are left alone. A schedule in a daemon's config "
        "file comes back when that daemon starts again.",
        tag="schedules",
        access=Access.WRITE,
        path_params=(NAME,),
        replies={204: Reply("Deleted.", None)},
        errors={404: _NOT_FOUND, 422: _BAD_NAME},
    )
)
async def delete_schedule(call: Call) -> Response:
    await call.api.context.broker.delete_schedule(_name(call))
    return Response(b"", 204)
