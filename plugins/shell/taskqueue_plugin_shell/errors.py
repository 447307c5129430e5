"""What can go wrong in a ``shell.run`` task, each error saying it in words.

Every exception fails the attempt; the queue retries it with backoff. Payload and allowlist
errors fail the same way on every retry; their messages say what to change.
"""

from __future__ import annotations

from taskqueue.errors import InvalidTaskError, PermanentError, TaskQueueError


class ShellTaskError(TaskQueueError):
    """Base class of the errors this plugin raises on purpose, other than payload errors."""


class ShellPayloadError(InvalidTaskError):
    """The payload is malformed; ``field`` names the key that is wrong."""


class EnvNotAllowedError(ShellPayloadError, PermanentError):
    """The payload's ``env`` sets a name ``[plugins.shell] allowed_env`` does not list.
    Permanent: the task is dead-lettered at once, as a retry would be refused alike."""


class ExecutableNotAllowedError(InvalidTaskError):
    """``argv[0]`` is not on the ``allowed_executables`` list (or the list is empty)."""


class CommandStartError(ShellTaskError):
    """The process could not be started (the executable vanished, the cwd is gone, ...)."""


class CommandFailedError(ShellTaskError):
    """The process exited with a code outside ``expected_exit`` (or was killed by a signal)."""

    def __init__(self, message: str, *, exit_code: int, stderr_tail: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
