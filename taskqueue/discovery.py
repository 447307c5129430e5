"""How every part of taskqueue finds its Redis and logs in to it.

The clients, the ``taskqueue`` tools and the daemon all ask :func:`find_redis`, so they agree
on where Redis is. The first of these that names one wins:

1. an explicit URL (``Client(url)``, ``--redis-url``),
2. ``$TASKQUEUE_REDIS__URL``,
3. the configuration's ``redis.url``,
4. ``redis.url`` in the data directory, where ``taskqueue run`` advertises the embedded Redis
   it started (:func:`advertise`),
5. ``redis://127.0.0.1:6379/0``.

:func:`redis_address` adds the credentials: ``redis.password``, or the file
``redis.password_file`` names, read when the connection is set up (at start, once) and never
logged.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from taskqueue.config.fields import ENV_PREFIX
from taskqueue.errors import ConfigError
from taskqueue.locations import credential_file, data_dir
from taskqueue.redis import RedisAddress

if TYPE_CHECKING:
    from taskqueue.config import Config

__all__ = [
    "ADVERTISED_FILE",
    "DEFAULT_URL",
    "URL_ENV_VAR",
    "Found",
    "Source",
    "advertise",
    "find_redis",
    "redis_address",
    "redis_password",
]

DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
#: The variable that sets ``redis.url``.
URL_ENV_VAR: Final = f"{ENV_PREFIX}REDIS__URL"
#: Where ``taskqueue run`` leaves its embedded Redis's URL, in the data directory.
ADVERTISED_FILE: Final = "redis.url"


class Source(enum.StrEnum):
    """Which step of the search named the Redis, for messages that say where to look."""

    EXPLICIT = "given explicitly"
    ENVIRONMENT = URL_ENV_VAR
    CONFIG = "redis.url"
    ADVERTISED = "advertised by `taskqueue run`"
    DEFAULT = "the default"


@attrs.frozen
class Found:
    """A Redis URL and the step that named it."""

    url: str
    source: Source
    #: The advertisement's file, for :attr:`Source.ADVERTISED`.
    path: Path | None = None


def find_redis(
    config: Config | None = None,
    *,
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    advertised: bool = True,
    default: bool = True,
) -> Found | None:
    """The Redis to use, by the order in the module's docstring (``os.environ`` when ``env``
    is None; ``Config()`` when ``config`` is). ``advertised=False`` skips the data
    directory's advertisement and ``default=False`` the default, for a ``taskqueue run`` that
    starts its own Redis when nothing names one; then None means nothing did."""
    environ = os.environ if env is None else env
    if url:
        return Found(url, Source.EXPLICIT)
    if environ.get(URL_ENV_VAR):
        return Found(environ[URL_ENV_VAR], Source.ENVIRONMENT)
    if config is None:
        from taskqueue.config import Config

        config = Config()
    if config.redis.url:
        return Found(config.redis.url, Source.CONFIG)
    if advertised:
        path = data_dir(config, environ) / ADVERTISED_FILE
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = path.read_text(encoding="utf-8").strip()
            if text:
                return Found(text, Source.ADVERTISED, path)
    return Found(DEFAULT_URL, Source.DEFAULT) if default else None


@contextlib.contextmanager
def advertise(directory: Path, url: str) -> Iterator[Path]:
    """Leave ``url`` in ``directory``'s ``redis.url`` for the block, so that the tools and
    clients started beside the daemon (or with its ``STATE_DIRECTORY``) find its embedded
    Redis with no configuration."""
    path = directory / ADVERTISED_FILE
    path.write_text(url + "\n", encoding="utf-8")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def redis_password(config: Config, env: Mapping[str, str] | None = None) -> str | None:
    """``redis.password``, or the first line of ``redis.password_file`` (relative: in
    ``$CREDENTIALS_DIRECTORY``). Raises ConfigError naming the file, never its content."""
    conf = config.redis
    if conf.password_file is None:
        return conf.password
    path = credential_file(conf.password_file, env)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"redis.password_file {path}: cannot read it: {reason}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"redis.password_file {path}: the file is empty")
    return password


def redis_address(
    config: Config, url: str | None = None, env: Mapping[str, str] | None = None
) -> RedisAddress:
    """Where and as whom to connect: :func:`find_redis`'s URL (or ``url``) with the
    configuration's database, user name and password."""
    if url is None:
        found = find_redis(config, env=env)
        assert found is not None  # the default is allowed
        url = found.url
    conf = config.redis
    return RedisAddress.from_url(
        url, db=conf.db, username=conf.username, password=redis_password(config, env)
    )
