"""The broker's Lua scripts, loaded once from the ``lua/`` folder beside this module.

Each script is its own file preceded by the definitions it uses from the generated key prelude
(:func:`taskqueue.broker.keys.lua_prelude`) and the shared helpers of ``_lib.lua``, picked by
:func:`taskqueue.broker.lua_link.link`: Redis runs a script's whole text on every call, so a
script carries only what it needs. Every file starts with a comment that lists its KEYS, ARGV
and what it returns.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import attrs

from taskqueue.broker.keys import lua_prelude
from taskqueue.broker.lua_link import link, parse_definitions
from taskqueue.redis import Script


@attrs.frozen
class Scripts:
    enqueue: Script
    claim: Script
    finish: Script
    heartbeat: Script
    reap: Script
    expire_workers: Script
    trim: Script
    promote: Script
    cancel: Script
    requeue_dead: Script
    purge: Script
    cancel_all: Script
    deregister: Script
    stop_hand_offs: Script
    progress: Script
    set_policy: Script
    view: Script
    view_by_key: Script
    view_workflow: Script
    view_groups: Script
    put_schedule: Script
    due_schedules: Script
    fire_schedules: Script
    read_schedules: Script
    pause_schedule: Script
    delete_schedule: Script


@cache
def load_scripts() -> Scripts:
    folder = resources.files("taskqueue.broker") / "lua"
    shared = parse_definitions(lua_prelude() + (folder / "_lib.lua").read_text())
    return Scripts(
        **{
            field.name: Script(field.name, link(shared, (folder / f"{field.name}.lua").read_text()))
            for field in attrs.fields(Scripts)
        }
    )
