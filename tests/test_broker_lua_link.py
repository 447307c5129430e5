"""Each script carries only the shared definitions it uses (taskqueue/broker/lua_link.py).

The rest of the broker tests run every linked script against a real Redis; these check the
linker's own rules, on small texts and on the real scripts.
"""

from __future__ import annotations

from importlib import resources

import attrs
import pytest

from taskqueue.broker.keys import lua_prelude
from taskqueue.broker.lua_link import link, parse_definitions, references
from taskqueue.broker.scripts import Scripts, load_scripts
from taskqueue.redis import Redis

SHARED = """\
-- a header comment
local P = KEYS[1]
local K_A = P .. 'a'
local K_B = P .. 'b'

-- adds to a list
local function push(key, value)
  redis.call('RPUSH', key, value)
end

local later  -- defined below

local function uses_push()
  push(K_A, 1)
  return later()
end

later = function()
  return 1
end

local TABLE = {
  1,
}
"""


def test_a_script_gets_what_it_names_and_what_that_names_in_the_original_order() -> None:
    linked = link(parse_definitions(SHARED), "return uses_push()\n")
    assert linked == (
        "-- a header comment\n"
        "local P = KEYS[1]\n"
        "local K_A = P .. 'a'\n"
        "\n-- adds to a list\n"
        "local function push(key, value)\n  redis.call('RPUSH', key, value)\nend\n"
        "\nlocal later  -- defined below\n"
        "\nlocal function uses_push()\n  push(K_A, 1)\n  return later()\nend\n"
        "\nlater = function()\n  return 1\nend\n"
        "return uses_push()\n"
    )
    assert "K_B" not in linked and "TABLE" not in linked


def test_names_in_comments_and_strings_pull_in_nothing() -> None:
    script = "-- push would be handy here\nreturn redis.call('GET', 'TABLE', \"K_B\")\n"
    assert link(parse_definitions(SHARED), script) == script
    assert references("x = 'a \\' push' .. \"--\" .. y -- z\n") == {"x", "y"}


def test_a_top_level_statement_that_is_no_definition_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a definition"):
        parse_definitions(SHARED + "redis.call('DEL', K_A)\n")
    with pytest.raises(ValueError, match="outside a definition"):
        parse_definitions("  indented = 1\n")


def _shared() -> str:
    return lua_prelude() + (resources.files("taskqueue.broker") / "lua" / "_lib.lua").read_text()


def test_every_real_script_holds_each_shared_definition_its_code_names() -> None:
    definitions = parse_definitions(_shared())
    scripts = load_scripts()
    for field in attrs.fields(Scripts):
        source = getattr(scripts, field.name).source
        kept = {d.names for d in definitions if d.text in source}
        named = references(source)
        for definition in definitions:
            if definition.names & named:
                assert definition.names in kept, (field.name, sorted(definition.names))


def test_small_scripts_leave_the_workflow_machinery_out() -> None:
    scripts = load_scripts()
    assert "local function settle" not in scripts.heartbeat.source
    assert "local function make_final" not in scripts.progress.source
    assert "local function make_final" in scripts.finish.source
    # finish ends tasks, which settles dependents: both halves of the forward declaration
    assert "local settle " in scripts.finish.source
    assert "settle = function" in scripts.finish.source
    assert len(scripts.heartbeat.source) < len(_shared()) / 4


async def test_every_linked_script_compiles_in_redis(redis: Redis) -> None:
    scripts = load_scripts()
    for field in attrs.fields(Scripts):
        script = getattr(scripts, field.name)
        assert await redis.execute("SCRIPT", "LOAD", script.source) == script.sha
