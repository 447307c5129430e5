"""``/api/v1/policy``: the queue policy every submitter obeys, read and set live.

PUT replaces the live layer of one scope (every type, or one type) with the body: a setting the
body leaves out is unset there, so the config's value (or the default) applies again. DELETE
clears the scope's live layer. The config layer is the daemons' (see
:mod:`taskqueue.broker.policy`) and is only shown here.
"""

from __future__ import annotations

import msgspec

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
from taskqueue.broker import task_type_problem
from taskqueue.broker.policy import GLOBAL_SETTINGS, TYPE_SETTINGS
from taskqueue.errors import InvalidTaskError
from taskqueue.models import Policy, TaskType
from taskqueue.wire import PolicyDocument, PolicyScope, policy_document, policy_scope

routes = RouteTable()


def _type(call: Call) -> str:
    """The path's task type, checked as a submission's would be (the URL map matches any
    segment)."""
    task_type: str = call.path["type"]
    if (problem := task_type_problem(task_type)) is not None:
        raise InvalidTaskError(problem, field="type")
    return task_type


TYPE = Param("type", TaskType, "The task type.", required=True)
_INVALID_TYPE = "The task type or a setting is invalid; `field` names it."
_PUT = (
    "Replaces the live layer of this scope with the body: a setting left out is unset there "
    "(the config's value, or the default, applies again). The next submission, through any "
    "interface, obeys it."
)


def _scope_body(name: str, left_out: tuple[str, ...], doc: str) -> type[msgspec.Struct]:
    """A body of Policy's settings less those of the other scope, so the OpenAPI document
    offers each scope only what it accepts."""
    fields = [
        (f.name, f.type, None) for f in msgspec.structs.fields(Policy) if f.name not in left_out
    ]
    body = msgspec.defstruct(
        name, fields, kw_only=True, frozen=True, omit_defaults=True, forbid_unknown_fields=True
    )
    body.__doc__ = doc
    return body


#: The global scope's settings: a type's limits are set per type.
GlobalPolicy = _scope_body("GlobalPolicy", TYPE_SETTINGS, "Queue policy for every task type.")
#: One task type's settings: the global-only ones are left out.
TypePolicy = _scope_body("TypePolicy", GLOBAL_SETTINGS, "Queue policy of one task type.")


def _policy(body: msgspec.Struct) -> Policy:
    return Policy(**msgspec.structs.asdict(body))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/policy",
        operation_id="getPolicy",
        summary="The queue policy",
        description="Every scope's live and config layers and what a submission gets.",
        tag="policy",
        access=Access.READ,
        replies={200: Reply("The policy.", PolicyDocument)},
    )
)
async def get_policy(call: Call) -> Response:
    return json_response(policy_document(await call.api.context.broker.policy()))


@routes.add(
    Operation(
        method="PUT",
        path=f"{API_PREFIX}/policy",
        operation_id="setPolicy",
        summary="Set the global policy live",
        description=_PUT,
        tag="policy",
        access=Access.WRITE,
        body=GlobalPolicy,
        replies={200: Reply("The policy, as it is now.", PolicyDocument)},
    )
)
async def set_policy(call: Call) -> Response:
    broker = call.api.context.broker
    await broker.set_policy(_policy(call.body), replace=True)
    return json_response(policy_document(await broker.policy()))


@routes.add(
    Operation(
        method="DELETE",
        path=f"{API_PREFIX}/policy",
        operation_id="clearPolicy",
        summary="Clear the global live policy",
        description="Unsets every live global setting: the config's apply again.",
        tag="policy",
        access=Access.WRITE,
        replies={200: Reply("The policy, as it is now.", PolicyDocument)},
    )
)
async def clear_policy(call: Call) -> Response:
    broker = call.api.context.broker
    await broker.set_policy(Policy(), replace=True)
    return json_response(policy_document(await broker.policy()))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/policy/{{type}}",
        operation_id="getTypePolicy",
        summary="One task type's policy",
        tag="policy",
        access=Access.READ,
        path_params=(TYPE,),
        replies={200: Reply("The type's policy.", PolicyScope)},
        errors={422: _INVALID_TYPE},
    )
)
async def get_type_policy(call: Call) -> Response:
    task_type = _type(call)
    view = await call.api.context.broker.policy()
    return json_response(policy_scope(view, task_type))


@routes.add(
    Operation(
        method="PUT",
        path=f"{API_PREFIX}/policy/{{type}}",
        operation_id="setTypePolicy",
        summary="Set one task type's policy live",
        description=_PUT,
        tag="policy",
        access=Access.WRITE,
        path_params=(TYPE,),
        body=TypePolicy,
        replies={200: Reply("The type's policy, as it is now.", PolicyScope)},
        errors={422: _INVALID_TYPE},
    )
)
async def set_type_policy(call: Call) -> Response:
    broker, task_type = call.api.context.broker, _type(call)
    await broker.set_policy(_policy(call.body), task_type, replace=True)
    return json_response(policy_scope(await broker.policy(), task_type))


@routes.add(
    Operation(
        method="DELETE",
        path=f"{API_PREFIX}/policy/{{type}}",
        operation_id="clearTypePolicy",
        summary="Clear one task type's live policy",
        description="Unsets every live setting of the type: its config's, or the global "
        "policy, apply again.",
        tag="policy",
        access=Access.WRITE,
        path_params=(TYPE,),
        replies={200: Reply("The type's policy, as it is now.", PolicyScope)},
        errors={422: _INVALID_TYPE},
    )
)
async def clear_type_policy(call: Call) -> Response:
    broker, task_type = call.api.context.broker, _type(call)
    await broker.set_policy(Policy(), task_type, replace=True)
    return json_response(policy_scope(await broker.policy(), task_type))
