"""Logging: one setup for the daemon, a per-task context, and three output formats.

:func:`configure_logging` installs one handler on the root logger:

* ``journald`` — structured entries over journald's native protocol, each field searchable
  (``journalctl TASK_ID=…``);
* ``console`` — one readable line per record for a terminal;
* ``json`` — one JSON object per line for log shippers.

The task context (:func:`bind_log_context`) lives in a :mod:`contextvars` variable. Trio gives
every new task a copy of its spawner's context, so fields bound around a task's processing also
appear on everything its child tasks log, and never leak into sibling tasks.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
import socket
import stat
import struct
import sys
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final, TextIO

__all__ = [
    "ConsoleFormatter",
    "JournaldHandler",
    "JsonFormatter",
    "LogContextFilter",
    "bind_log_context",
    "configure_logging",
    "current_log_context",
]

#: Where journald listens for native-protocol datagrams.
JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"

FORMATS: Final = ("auto", "journald", "console", "json")

_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "taskqueue_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` or the context.
_STANDARD_ATTRS: Final = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime", "taskName"]
)

# Set by LogContextFilter: the names of the record's attributes that came from the context.
_CONTEXT_ATTR: Final = "_taskqueue_context"

# Marks the handler configure_logging installed, so calling it again replaces only that one.
_OWNED_ATTR: Final = "_taskqueue_owned"


# -- task context -------------------------------------------------------------------------------


@contextlib.contextmanager
def bind_log_context(**fields: object) -> Iterator[Mapping[str, object]]:
    """Add ``fields`` to everything logged inside the ``with`` block, in this task and children.

    Typical fields are ``task_id``, ``task_type``, ``attempt``, ``worker_id`` and
    ``request_id``. Blocks nest: inner fields are added to (or override) outer ones, and a field
    bound to None is removed for the block's duration. Yields the merged context.

    The block must start and end in the same trio task (a plain ``with`` in one async function
    does), because leaving it resets the context variable with the token from entering it.
    """
    merged = dict(_context.get())
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def set_log_context(fields: dict[str, object]) -> contextvars.Token[Mapping[str, object]]:
    """Replace the context with exactly ``fields``; undo with :func:`reset_log_context`.

    The cheap form of :func:`bind_log_context` for hot paths (the consumer binds every task):
    no merge and no generator, about a microsecond.
    """
    return _context.set(fields)


def reset_log_context(token: contextvars.Token[Mapping[str, object]]) -> None:
    _context.reset(token)


def current_log_context() -> dict[str, object]:
    """A copy of the fields bound by the enclosing :func:`bind_log_context` blocks."""
    return dict(_context.get())


class LogContextFilter(logging.Filter):
    """Copies the bound context fields onto each record as attributes; never drops a record.

    A field passed explicitly with ``extra=`` wins over the context's value of the same name.
    Attach it to handlers (not loggers): a logger's filters do not see records propagated from
    its children, a handler's do.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context and not hasattr(record, _CONTEXT_ATTR):
            names = []
            for key, value in context.items():
                if key not in record.__dict__:
                    setattr(record, key, value)
                    names.append(key)
            setattr(record, _CONTEXT_ATTR, tuple(names))
        return True


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The record's context fields (in binding order) followed by its ``extra=`` fields.

    Attributes whose names start with ``_`` are private to whoever set them and never shown.
    """
    context_names: tuple[str, ...] = getattr(record, _CONTEXT_ATTR, ())
    fields = {name: record.__dict__[name] for name in context_names}
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in fields:
            fields[key] = value
    return fields


# -- formatters ---------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, context and extra fields, traceback.

    ``ts`` is ISO 8601 in UTC with milliseconds; ``level`` is the lower-case level name. A
    context or extra field that would shadow one of those keys is emitted as ``extra_<name>``.
    Values JSON cannot encode are written as their ``str()``.
    """

    _BASE_KEYS: Final = frozenset({"ts", "level", "logger", "message", "traceback", "stack"})

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        entry: dict[str, object] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _record_fields(record).items():
            entry[f"extra_{key}" if key in self._BASE_KEYS else key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL    logger: message key=value ...`` in local time, for people.

    The traceback, if any, follows on the next lines. With ``color`` the level name is
    coloured with ANSI escapes.
    """

    _COLORS: Final[Mapping[int, str]] = {
        logging.DEBUG: "\x1b[2m",
        logging.INFO: "\x1b[32m",
        logging.WARNING: "\x1b[33m",
        logging.ERROR: "\x1b[31m",
        logging.CRITICAL: "\x1b[1;31m",
    }

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self._color = color

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created)
        level = f"{record.levelname:<8}"
        if self._color:
            start = self._COLORS.get(record.levelno, "")
            level = f"{start}{level}\x1b[0m" if start else level
        line = f"{when:%H:%M:%S}.{when.microsecond // 1000:03d} {level} {record.name}: "
        line += record.getMessage()
        pairs = " ".join(f"{k}={_console_value(v)}" for k, v in _record_fields(record).items())
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


_PLAIN_VALUE = re.compile(r"[^\s\"'=]+")


def _console_value(value: object) -> str:
    text = str(value)
    return text if _PLAIN_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


# -- journald -----------------------------------------------------------------------------------


def journal_priority(levelno: int) -> int:
    """The syslog priority for a logging level: debug 7, info 6, warning 4, error 3, critical 2."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


_INVALID_FIELD_CHARS = re.compile(r"[^A-Z0-9_]")


def journal_field_name(name: str) -> str | None:
    """``name`` as a valid journal field name, or None if nothing valid is left.

    Valid names are upper-case ``A-Z``, digits and ``_``, at most 64 characters, starting with
    neither a digit nor ``_`` (leading underscores are reserved for fields journald sets itself).
    """
    cleaned = _INVALID_FIELD_CHARS.sub("_", name.upper()).lstrip("_0123456789")
    return cleaned[:64] or None


def encode_journal_entry(fields: list[tuple[str, str]]) -> bytes:
    """Encode ``(NAME, value)`` pairs in the native protocol.

    A value without newlines is sent as ``NAME=value\\n``. One with newlines (a traceback) uses
    the binary form: ``NAME\\n``, the value's length as a 64-bit little-endian integer, the
    value, ``\\n``.
    """
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "replace")
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


class JournaldHandler(logging.Handler):
    """Writes records to journald over its native protocol (no libsystemd needed).

    Fields: MESSAGE (the formatted record: message plus traceback), PRIORITY,
    SYSLOG_IDENTIFIER, LOGGER, CODE_FILE, CODE_LINE, CODE_FUNC, then the context and ``extra=``
    fields with their names upper-cased (TASK_ID, TASK_TYPE, ATTEMPT, WORKER_ID, REQUEST_ID, …).
    A field whose name collides with one of the fixed fields is left out.

    Entries too large for one datagram (``EMSGSIZE``, ``ENOBUFS``) go the way ``sd_journal_send``
    does it: written to a sealed memfd whose descriptor is passed in an empty datagram. If that
    fails too, every value is cut to 8 KiB and the entry sent again with ``TRUNCATED=1``.

    The socket has a send timeout (``send_timeout`` seconds): a logging call in a trio program
    blocks the event loop, and while journald is wedged it is better to lose log lines than to
    stall every task until leases and heartbeats lapse. A record that cannot be sent is written
    to ``fallback`` (stderr by default, which systemd also feeds into the journal) with a
    ``<priority>`` prefix that journald understands, and the first such failure is reported once.
    """

    _FIXED: Final = frozenset(
        {
            "MESSAGE",
            "PRIORITY",
            "SYSLOG_IDENTIFIER",
            "LOGGER",
            "CODE_FILE",
            "CODE_LINE",
            "CODE_FUNC",
            "TRUNCATED",
        }
    )
    _TRUNCATE_TO: Final = 8192

    def __init__(
        self,
        socket_path: str = JOURNAL_SOCKET,
        *,
        identifier: str = "taskqueue",
        send_timeout: float = 1.0,
        fallback: TextIO | None = None,
    ) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.identifier = identifier
        self._fallback = fallback
        self._reported_failure = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(send_timeout)

    def journal_fields(self, record: logging.LogRecord) -> list[tuple[str, str]]:
        """The ``(NAME, value)`` pairs of the journal entry for ``record``."""
        fields = [
            ("MESSAGE", self.format(record)),
            ("PRIORITY", str(journal_priority(record.levelno))),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName or ""),
        ]
        for key, value in _record_fields(record).items():
            name = journal_field_name(key)
            if name is not None and name not in self._FIXED:
                fields.append((name, str(value)))
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.journal_fields(record)
            self._send(fields)
        except OSError as exc:
            self._report_failure(exc)
            self._write_fallback(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            super().close()

    def _send(self, fields: list[tuple[str, str]]) -> None:
        entry = encode_journal_entry(fields)
        try:
            self._sock.sendto(entry, self.socket_path)
            return
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
        try:
            self._send_via_memfd(entry)
        except OSError:
            limit = self._TRUNCATE_TO
            cut = [(name, value[:limit]) for name, value in fields]
            self._sock.sendto(encode_journal_entry([*cut, ("TRUNCATED", "1")]), self.socket_path)

    def _send_via_memfd(self, entry: bytes) -> None:
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(entry)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            self._sock.sendmsg([], rights, 0, self.socket_path)
        finally:
            os.close(fd)

    def _report_failure(self, exc: OSError) -> None:
        if self._reported_failure:
            return
        self._reported_failure = True
        stream = self._fallback or sys.stderr
        with contextlib.suppress(Exception):
            stream.write(
                f"taskqueue: cannot write to journald at {self.socket_path}: {exc}; "
                "writing log records to stderr instead\n"
            )

    def _write_fallback(self, record: logging.LogRecord) -> None:
        stream = self._fallback or sys.stderr
        try:
            prefix = f"<{journal_priority(record.levelno)}>"
            text = self.format(record).replace("\n", "\n" + prefix)
            stream.write(f"{prefix}{record.name}: {text}\n")
            stream.flush()
        except Exception:
            self.handleError(record)


# -- set-up -------------------------------------------------------------------------------------


def configure_logging(
    level: str | int = "info",
    format: str = "auto",
    *,
    stream: TextIO | None = None,
    journal_socket: str = JOURNAL_SOCKET,
) -> None:
    """Install taskqueue's handler on the root logger, replacing the one a previous call added.

    ``level`` is debug, info, warning, error or critical (or a logging level number).
    ``format`` is ``journald``, ``console``, ``json`` or ``auto``; ``stream`` (stderr by
    default) receives console and JSON output.

    ``auto`` picks journald when ``stream`` is connected to the journal and its socket exists,
    else console when ``stream`` is a terminal, else JSON. "Connected to the journal" follows
    ``systemd.exec(5)``: ``JOURNAL_STREAM`` holds the device and inode of the stream systemd
    set up, and they must match ``stream``'s — a child whose stderr was redirected inherits the
    variable without being connected.

    Other handlers on the root logger (pytest's, an embedding application's) are left alone.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}: expected one of {', '.join(FORMATS)}")
    levelno = _parse_level(level)
    out = sys.stderr if stream is None else stream
    chosen = _choose_format(out, journal_socket) if format == "auto" else format

    handler: logging.Handler
    if chosen == "journald":
        handler = JournaldHandler(journal_socket, fallback=out)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(out)
        if chosen == "console":
            handler.setFormatter(ConsoleFormatter(color=_wants_color(out)))
        else:
            handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    setattr(handler, _OWNED_ATTR, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OWNED_ATTR, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(levelno)


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        names = "debug, info, warning, error, critical"
        raise ValueError(f"unknown log level {level!r}: expected one of {names}") from None


def _choose_format(stream: TextIO, journal_socket: str) -> str:
    if _connected_to_journal(stream) and _is_socket(journal_socket):
        return "journald"
    if _isatty(stream):
        return "console"
    return "json"


def _connected_to_journal(stream: TextIO) -> bool:
    value = os.environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (AttributeError, ValueError, OSError):
        return False


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _wants_color(stream: TextIO) -> bool:
    return _isatty(stream) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
