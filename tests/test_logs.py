"""Logging set-up, the task context, and the JSON, console and journald outputs."""

from __future__ import annotations

import array
import datetime as dt
import fcntl
import io
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel
from log_helpers import journal_fields, json_records

from taskqueue.logs import (
    ConsoleFormatter,
    JournaldHandler,
    JsonFormatter,
    LogContextFilter,
    bind_log_context,
    configure_logging,
    current_log_context,
    journal_field_name,
    journal_priority,
)

# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was: handlers (closing ours) and level."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own, not propagating, so only the handlers a test adds see its records."""
    log = logging.getLogger("taskqueue.test_logs")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        if type(handler).__module__ in ("logging", "taskqueue.logs"):  # not pytest's
            log.removeHandler(handler)
            handler.close()
    log.propagate = True
    log.setLevel(logging.NOTSET)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for journald, and its path."""
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


def receive_entry(sock: socket.socket) -> dict[str, str]:
    fields = journal_fields(sock.recv(1 << 20))
    names = [name for name, _ in fields]
    assert len(names) == len(set(names)), f"repeated fields in {names}"
    return dict(fields)


# -- task context -------------------------------------------------------------------------------


def test_bound_context_nests_and_is_restored_on_exit() -> None:
    assert current_log_context() == {}
    with bind_log_context(worker_id="w-1"):
        with bind_log_context(task_id="t-1", attempt=2):
            assert current_log_context() == {"worker_id": "w-1", "task_id": "t-1", "attempt": 2}
            with bind_log_context(attempt=None):
                assert current_log_context() == {"worker_id": "w-1", "task_id": "t-1"}
        assert current_log_context() == {"worker_id": "w-1"}
    assert current_log_context() == {}


def test_current_log_context_is_a_copy() -> None:
    with bind_log_context(task_id="t-1"):
        current_log_context()["task_id"] = "changed"
        assert current_log_context() == {"task_id": "t-1"}


async def test_context_follows_into_child_tasks_but_not_siblings() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    log = logging.getLogger("taskqueue.consumer")

    async def child(name: str) -> None:
        await trio.lowlevel.checkpoint()
        log.info("from %s", name)

    async with trio.open_nursery() as nursery:
        with bind_log_context(task_id="t-1", task_type="email.send", worker_id="w-1"):
            # Spawned inside the block: keeps the fields even though it runs after the block.
            nursery.start_soon(child, "child")
        nursery.start_soon(child, "sibling")

    by_message = {entry["message"]: entry for entry in json_records(stream)}
    assert by_message["from child"]["task_id"] == "t-1"
    assert by_message["from child"]["task_type"] == "email.send"
    assert by_message["from child"]["worker_id"] == "w-1"
    assert "task_id" not in by_message["from sibling"]


# -- JSON ---------------------------------------------------------------------------------------


def test_json_lines_carry_base_keys_context_and_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    log = logging.getLogger("taskqueue.consumer")

    with bind_log_context(task_id="t-1", attempt=2, request_id="r-9"):
        log.info("claimed %d tasks", 3, extra={"queue": "default", "level": "shadowed"})
    log.debug("below the level")

    [entry] = json_records(stream)
    assert entry["level"] == "info"
    assert entry["logger"] == "taskqueue.consumer"
    assert entry["message"] == "claimed 3 tasks"
    assert entry["task_id"] == "t-1"
    assert entry["attempt"] == 2
    assert entry["request_id"] == "r-9"
    assert entry["queue"] == "default"
    assert entry["extra_level"] == "shadowed"
    assert "traceback" not in entry
    ts = str(entry["ts"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
    parsed = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 60


def test_json_exception_becomes_a_traceback_string_and_odd_values_become_text() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)

    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("taskqueue.x").exception("failed", extra={"where": Path("/tmp/x")})

    [entry] = json_records(stream)
    assert entry["level"] == "error"
    traceback = str(entry["traceback"])
    assert traceback.startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in traceback
    assert entry["where"] == "/tmp/x"


def test_explicit_extra_wins_over_the_bound_context(logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    logger.addHandler(handler)

    with bind_log_context(task_id="from-context", worker_id="w-1"):
        logger.info("hello", extra={"task_id": "explicit"})

    [entry] = json_records(stream)
    assert entry["task_id"] == "explicit"
    assert entry["worker_id"] == "w-1"


# -- console ------------------------------------------------------------------------------------


def test_console_line_is_time_level_logger_message_then_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)

    with bind_log_context(task_id="t-1", attempt=2):
        logging.getLogger("taskqueue.consumer").warning(
            "slow task", extra={"note": "took a while", "empty": ""}
        )

    line = stream.getvalue().rstrip("\n")
    pattern = (
        r"\d\d:\d\d:\d\d\.\d{3} WARNING  taskqueue\.consumer: slow task"
        r' task_id=t-1 attempt=2 note="took a while" empty=""'
    )
    assert re.fullmatch(pattern, line), line


def test_console_appends_the_traceback_on_following_lines() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)

    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("taskqueue.x").exception("boom")

    first, *rest = stream.getvalue().rstrip("\n").splitlines()
    assert first.endswith("ERROR    taskqueue.x: boom")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ZeroDivisionError: division by zero"


def test_console_colours_only_when_asked(logger: logging.Logger) -> None:
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "bad", (), None)

    assert "\x1b[" not in ConsoleFormatter().format(record)
    assert "\x1b[31mERROR" in ConsoleFormatter(color=True).format(record)


# -- journald -----------------------------------------------------------------------------------


def test_journald_entry_has_message_priority_code_location_and_context_fields(
    journal: tuple[socket.socket, str], logger: logging.Logger
) -> None:
    sock, path = journal
    handler = JournaldHandler(path)
    handler.addFilter(LogContextFilter())
    logger.addHandler(handler)

    with bind_log_context(
        task_id="t-1", task_type="email.send", attempt=3, worker_id="w-1", request_id="r-1"
    ):
        logger.info("sent %s", "mail", extra={"http.status": 250, "_private": "p", "logger": "x"})

    entry = receive_entry(sock)
    assert entry["MESSAGE"] == "sent mail"
    assert entry["PRIORITY"] == "6"
    assert entry["SYSLOG_IDENTIFIER"] == "taskqueue"
    assert entry["LOGGER"] == "taskqueue.test_logs"
    assert entry["CODE_FILE"] == __file__
    assert entry["CODE_FUNC"] == (
        "test_journald_entry_has_message_priority_code_location_and_context_fields"
    )
    assert int(entry["CODE_LINE"]) > 0
    assert entry["TASK_ID"] == "t-1"
    assert entry["TASK_TYPE"] == "email.send"
    assert entry["ATTEMPT"] == "3"
    assert entry["WORKER_ID"] == "w-1"
    assert entry["REQUEST_ID"] == "r-1"
    assert entry["HTTP_STATUS"] == "250"
    # Underscored attributes are private to the code that set them; LOGGER is not overridden.
    assert "PRIVATE" not in entry
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", name) for name in entry)


def test_journald_multiline_message_uses_the_binary_form(
    journal: tuple[socket.socket, str], logger: logging.Logger
) -> None:
    sock, path = journal
    logger.addHandler(JournaldHandler(path))

    try:
        raise RuntimeError("line one\nline two")
    except RuntimeError:
        logger.exception("task failed")

    raw = sock.recv(1 << 20)
    message = journal_fields(raw)[0]
    assert message[0] == "MESSAGE"
    assert message[1].startswith("task failed\nTraceback (most recent call last):")
    assert message[1].endswith("RuntimeError: line one\nline two")
    encoded = message[1].encode()
    assert raw.startswith(b"MESSAGE\n" + struct.pack("<Q", len(encoded)) + encoded + b"\n")
    assert b"\nPRIORITY=3\n" in raw


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
    ],
)
def test_journald_priority_follows_syslog_numbers(
    level: int, priority: int, journal: tuple[socket.socket, str], logger: logging.Logger
) -> None:
    sock, path = journal
    logger.addHandler(JournaldHandler(path))

    logger.log(level, "hello")

    assert journal_priority(level) == priority
    assert receive_entry(sock)["PRIORITY"] == str(priority)


def test_journald_entry_too_big_for_a_datagram_goes_through_a_sealed_memfd(
    journal: tuple[socket.socket, str], logger: logging.Logger
) -> None:
    sock, path = journal
    logger.addHandler(JournaldHandler(path))
    big = "x" * (2 << 20)

    logger.warning(big)

    fd_size = struct.calcsize("i")
    payload, ancdata, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(fd_size))
    assert payload == b""
    [(level, kind, data)] = ancdata
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fd = array.array("i", data[:fd_size])[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        content = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
    entry = dict(journal_fields(content))
    assert entry["MESSAGE"] == big
    assert entry["PRIORITY"] == "4"


def test_journald_unreachable_falls_back_to_prefixed_lines_on_stderr(
    tmp_path: Path, logger: logging.Logger
) -> None:
    fallback = io.StringIO()
    logger.addHandler(JournaldHandler(str(tmp_path / "missing.sock"), fallback=fallback))

    logger.error("first")
    logger.info("second\nline")

    lines = fallback.getvalue().splitlines()
    assert len([line for line in lines if "cannot write to journald" in line]) == 1
    assert "<3>taskqueue.test_logs: first" in lines
    assert "<6>taskqueue.test_logs: second" in lines
    assert "<6>line" in lines


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("task_id", "TASK_ID"),
        ("http.status", "HTTP_STATUS"),
        ("_private", "PRIVATE"),
        ("2fa", "FA"),
        ("___", None),
        ("a" * 100, "A" * 64),
    ],
)
def test_journal_field_names_are_made_valid(name: str, expected: str | None) -> None:
    assert journal_field_name(name) == expected


# -- configure_logging --------------------------------------------------------------------------


def _journal_stream_value(stream: io.TextIOWrapper) -> str:
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_auto_chooses_journald_when_stderr_is_the_journal_stream(
    tmp_path: Path, journal: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = journal
    with open(tmp_path / "stderr", "w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_value(stream))

        configure_logging("info", "auto", stream=stream, journal_socket=path)
        with bind_log_context(task_id="t-7"):
            logging.getLogger("taskqueue.api").warning("via journald")

    entry = receive_entry(sock)
    assert entry["MESSAGE"] == "via journald"
    assert entry["PRIORITY"] == "4"
    assert entry["TASK_ID"] == "t-7"
    assert (tmp_path / "stderr").read_text() == ""


@pytest.mark.parametrize("case", ["other stream", "garbage", "no socket"])
def test_auto_falls_back_to_json_when_not_connected_to_the_journal(
    case: str, tmp_path: Path, journal: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = journal
    with open(tmp_path / "stderr", "w") as stream:
        if case == "other stream":
            monkeypatch.setenv("JOURNAL_STREAM", "1:1")
        elif case == "garbage":
            monkeypatch.setenv("JOURNAL_STREAM", "journal")
        else:
            monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_value(stream))
            path = str(tmp_path / "no-journal.sock")

        configure_logging("info", "auto", stream=stream, journal_socket=path)
        logging.getLogger("taskqueue.api").info("as json")

    [line] = (tmp_path / "stderr").read_text().splitlines()
    assert json.loads(line)["message"] == "as json"


def test_auto_chooses_console_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", closefd=True) as stream:
            configure_logging("info", "auto", stream=stream)
            logging.getLogger("taskqueue.cli").info("on a tty")
        output = os.read(controller, 4096).decode()
    finally:
        os.close(controller)

    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} INFO     taskqueue\.cli: on a tty\r?\n", output)


def test_configure_logging_replaces_its_own_handler_and_keeps_others() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    first, second = io.StringIO(), io.StringIO()

    configure_logging("warning", "json", stream=first)
    configure_logging("debug", "json", stream=second)
    logging.getLogger("taskqueue.x").debug("once")

    assert first.getvalue() == ""
    assert [e["message"] for e in json_records(second)] == ["once"]
    assert foreign in root.handlers
    assert root.level == logging.DEBUG


@pytest.mark.parametrize(
    ("level", "format", "message"),
    [("loud", "json", "unknown log level"), ("info", "xml", "unknown log format")],
)
def test_configure_logging_rejects_unknown_names(level: str, format: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure_logging(level, format, stream=io.StringIO())
