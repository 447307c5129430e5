"""What a daemon service is: a name and a ``run`` that reports when it has started.

:func:`~taskqueue.daemon.runtime.run_daemon` starts the services of its mode one after the
other, each with ``nursery.start(service.run)``, so a service that needs Redis before it can be
of use (the heartbeat, say) holds start-up, and READY, until it is. Its ``name`` is what
``/readyz`` lists among the services expected to run.

A service either runs until it is cancelled (the scheduler, the reaper …) or, when ``drains``
is true, finishes its own work once the daemon's shutdown begins and returns (the consumer lets
running tasks end; the API lets running requests end). The daemon stops once every draining
service has returned, and only then cancels the rest, so the heartbeat keeps the leases of
draining tasks alive to the end.
"""

from __future__ import annotations

from typing import Any, Protocol


class Service(Protocol):
    """A long-running part of the daemon."""

    @property
    def name(self) -> str: ...

    @property
    def drains(self) -> bool: ...

    async def run(self, *, task_status: Any) -> None:
        """Run; call ``task_status.started()`` once the service is of use."""
