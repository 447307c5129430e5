"""Every place taskqueue corrects a framework, or leans on its internals, in one package.

Each is written against the releases listed in :data:`SUPPORTED`, which ``pyproject.toml``
pins; ``tests/test_patches.py`` fails in CI when an installed release, or a pin, admits one
that is not listed, so a new release is checked against the code here before anyone runs it.
:func:`check` refuses to start the API on a release not listed (one installed by hand).

What leans on which framework's internals:

- hypercorn (:mod:`.hypercorn_fixes` installs these): HTTP/2 streams reaped as they finish,
  a connection's request bodies and send chunks bounded (:mod:`.hypercorn_h2`); connections
  counted against ``server.max_connections``, one connection's error closing only that
  connection, and a keep-alive timer that costs no task per request (:mod:`.hypercorn_tcp`);
  an HTTP/1.1 response written in one piece, its status line with its reason phrase
  (:mod:`.hypercorn_h11`). The REST app
  (:mod:`taskqueue.api.rest.app`) patches nothing but leans on when hypercorn's HTTP/1.1
  protocol keeps a connection: only if the request's body has all arrived when the response
  completes (``tests/test_api_rest_keepalive.py`` checks it).
- betterproto: server-stream generators closed when their call ends
  (:mod:`.betterproto_streams`); ``ServiceBase.__mapping__()`` routing gRPC calls
  (:mod:`taskqueue.api.grpc.dispatcher`); a message class's field table checking a request
  before it is parsed (:mod:`taskqueue.api.grpc.framing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Final

#: Distribution name -> the release prefixes the code here was written against and tested on.
SUPPORTED: Final[Mapping[str, tuple[str, ...]]] = {
    "hypercorn": ("0.17.", "0.18."),
    "h2": ("4.1.", "4.2.", "4.3.", "4.4."),
    "betterproto": ("2.0.0b7",),
}


def unsupported() -> list[str]:
    """What is installed but not supported, as ``"hypercorn 0.19.0 (supported: 0.17.x, …)"``."""
    found = []
    for name, prefixes in SUPPORTED.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if not installed.startswith(prefixes):
            shown = ", ".join(p + "x" if p.endswith(".") else p for p in prefixes)
            found.append(f"{name} {installed} (supported: {shown})")
    return found


def check() -> None:
    """Raise RuntimeError naming every installed framework release the patches do not know."""
    wrong = unsupported()
    if wrong:
        raise RuntimeError(
            "taskqueue's API leans on framework internals that these releases may have "
            f"changed: {'; '.join(wrong)}. Install the supported releases (pip install "
            "taskqueue pins them), or check taskqueue/api/patches against the new ones"
        )
