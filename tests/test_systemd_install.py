"""``taskqueue systemd install``: the units it writes pass ``systemd-analyze verify``, and the
daemon started as the unit starts it (working directory ``/``, ``STATE_DIRECTORY`` and
``CONFIGURATION_DIRECTORY`` set, everything but the state directory read-only) keeps its data
in the state directory and serves."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Result, env_without_redis, run, wait_until
from daemon_helpers import STARTUP

from taskqueue.deploy import UNIT_NAMES, example_config, unit_text

VENV = Path(sys.prefix)
EXECUTABLE = VENV / "bin" / "taskqueue"
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)


def install(tmp_path: Path, *flags: str) -> Result:
    return run(
        env_without_redis(),
        "systemd",
        "install",
        "--prefix",
        str(VENV),
        "--unit-dir",
        str(tmp_path / "units"),
        "--config-dir",
        str(tmp_path / "etc"),
        *flags,
    )


def verify(units: list[Path], *, user: bool, runtime_dir: Path) -> str:
    """``systemd-analyze [--user] verify``'s complaints about our units ("" if none)."""
    runtime_dir.mkdir(exist_ok=True)
    done = subprocess.run(
        ["systemd-analyze", *(["--user"] if user else []), "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)},  # a user manager's need
        check=False,
    )
    output = done.stdout + done.stderr
    # Unknown keys and bad values are only warnings: the output must not mention our units.
    ours = [line for line in output.splitlines() if re.search(r"taskqueue\S*\.service", line)]
    assert done.returncode == 0, output
    return "\n".join(ours)


def setting(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]


def test_install_writes_units_that_start_this_venvs_taskqueue(tmp_path: Path) -> None:
    done = install(tmp_path)

    assert done.code == 0, done
    for name in UNIT_NAMES:
        text = (tmp_path / "units" / name).read_text()
        (exec_start,) = setting(text, "ExecStart")
        assert shlex.split(exec_start)[0] == str(EXECUTABLE)
        assert text.replace(exec_start, "") == unit_text(name).replace(
            setting(unit_text(name), "ExecStart")[0], ""
        )
    assert (tmp_path / "etc" / "taskqueue.toml").read_text() == example_config()
    assert "next: systemctl daemon-reload && systemctl enable --now taskqueue" in done.out


def test_install_keeps_an_existing_configuration(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "taskqueue.toml").write_text("[worker]\nconcurrency = 4\n")

    done = install(tmp_path)

    assert done.code == 0, done
    assert (tmp_path / "etc" / "taskqueue.toml").read_text() == "[worker]\nconcurrency = 4\n"
    assert "kept" in done.out


def test_print_writes_nothing_and_a_wrong_prefix_is_refused(tmp_path: Path) -> None:
    printed = install(tmp_path, "--print")
    assert printed.code == 0, printed
    assert f"ExecStart={EXECUTABLE} run" in printed.out
    assert f"ExecStart={EXECUTABLE} worker" in printed.out
    assert not (tmp_path / "units").exists()
    assert not (tmp_path / "etc").exists()

    wrong = run(env_without_redis(), "systemd", "install", "--print", "--prefix", str(tmp_path))
    assert wrong.code == 2
    assert wrong.error.startswith(f"{tmp_path}/bin/taskqueue is not an executable file")


def test_user_units_leave_out_what_a_user_manager_cannot_do(tmp_path: Path) -> None:
    assert install(tmp_path, "--user").code == 0
    text = (tmp_path / "units" / "taskqueue.service").read_text()

    assert setting(text, "DynamicUser") == setting(text, "ProtectSystem") == []
    assert setting(text, "WantedBy") == ["default.target"]
    assert setting(text, "StateDirectory") == ["taskqueue"]
    assert setting(text, "Type") == ["notify"]
    assert setting(text, "ExecStart") == [f"{EXECUTABLE} run"]


@needs_systemd_analyze
def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert install(tmp_path / "system").code == 0
    assert install(tmp_path / "user", "--user").code == 0

    for kind in ("system", "user"):
        units = sorted((tmp_path / kind / "units").glob("*.service"))
        assert [u.name for u in units] == sorted(UNIT_NAMES)
        assert verify(units, user=kind == "user", runtime_dir=tmp_path / "run") == ""


# -- the daemon as the unit starts it -------------------------------------------------------


def _read_only_root(state: Path) -> list[str] | None:
    """A command prefix that runs its command with ``/`` read-only except ``state`` (a mount
    namespace of its own, as ProtectSystem=strict makes), or None where namespaces cannot be
    had. Checked by writing inside and outside ``state`` through it."""
    if shutil.which("unshare") is None:
        return None
    script = (
        'mount --bind "$0" "$0" && mount --rbind / / && mount -o remount,bind,ro / && '
        'cd / && exec "$@"'
    )
    prefix = ["unshare", "--map-root-user", "--mount", "sh", "-c", script, str(state)]
    outside = state.parent / "written-outside"
    probe = subprocess.run(
        [*prefix, "sh", "-c", f'touch "{state}/probe" && ! touch "{outside}" 2>/dev/null'],
        capture_output=True,
        timeout=30,
        check=False,
    )
    (state / "probe").unlink(missing_ok=True)
    if probe.returncode != 0 or outside.exists():
        outside.unlink(missing_ok=True)
        return None
    return prefix


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(STARTUP)
        yield sock


def _wait_ready(sock: socket.socket) -> None:
    while "READY=1" not in sock.recv(4096).decode().splitlines():
        pass


def test_the_daemon_under_the_units_environment_keeps_its_data_in_the_state_directory(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    assert install(tmp_path).code == 0
    unit = (tmp_path / "units" / "taskqueue.service").read_text()
    (tmp_path / "etc" / "taskqueue.toml").write_text(
        '[server]\nport = 0\n\n[worker]\nid = "sandboxed"\n\n[logging]\nformat = "console"\n'
    )
    state = tmp_path / "state"
    state.mkdir()
    elsewhere = tmp_path / "elsewhere"  # where the tools run: neither cwd nor the state dir
    elsewhere.mkdir()
    env = env_without_redis(
        STATE_DIRECTORY=str(state),
        CONFIGURATION_DIRECTORY=str(tmp_path / "etc"),
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
    )
    env.update(dict(v.split("=", 1) for v in setting(unit, "Environment")))
    (exec_start,) = setting(unit, "ExecStart")
    sandbox = _read_only_root(state)
    if sandbox is None:  # no mount namespace: at least not in the working directory either
        cwd, command = elsewhere, shlex.split(exec_start)
    else:
        cwd, command = Path("/"), [*sandbox, *shlex.split(exec_start)]
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        try:
            _wait_ready(notify_socket)
        except TimeoutError:
            raise AssertionError(f"no READY=1; the daemon's log:\n{log.read_text()}") from None
        data = state / "data"
        assert (data / "taskqueue.lock").read_text() == f"{daemon.pid}\n"
        assert (data / "redis.url").read_text().startswith("redis://127.0.0.1:")
        assert f"data in {data}" in log.read_text()

        # The tools find it through STATE_DIRECTORY, as `systemd-run -p StateDirectory=` would.
        tools = env_without_redis(STATE_DIRECTORY=str(state))
        workers = run(tools, "workers", "--json", cwd=elsewhere).json()
        assert [w["id"] for w in workers] == ["sandboxed"]  # the config was read from etc/
        submit = ("submit", "echo", "--payload", '"boxed"', "--wait", "--json")
        done = run(tools, *submit, cwd=elsewhere)
        assert done.json()["result"] == "boxed"
        wait_until(lambda: any(data.glob("appendonly*")), "the embedded Redis writes its AOF")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert "Traceback" not in log.read_text()
    assert not (elsewhere / "data").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == []
    if sandbox is None:
        pytest.skip("unshare could not make / read-only here: checked cwd and the data path only")
