"""The consumer: claims tasks in batches and runs each in its own cancel scope.

Shape: one claim loop leases batches of tasks into a memory channel; ``concurrency``
long-lived slot tasks take them one at a time, each run inside a cancel scope whose deadline is
the task's timeout; outcomes, and the progress processors report, go to coalescing writers that
write everything gathered so far in one round trip, so a burst of short tasks costs one round
trip per batch, not per task. Per task, the hot path is a few integer increments and dict
operations around the processor's call.

- :mod:`~taskqueue.daemon.consumer.service`: :class:`Consumer`, the claim loop, the slots,
  the table of claimed tasks, stop and drain.
- :mod:`~taskqueue.daemon.consumer.slot`: running one task in its cancel scope.
- :mod:`~taskqueue.daemon.consumer.writer`: the coalescing writer.
- :mod:`~taskqueue.daemon.consumer.reporting`: outcomes to reports, and their metrics.

Lifecycle of one claimed task inside this process, and who may end it early:

- ``request_cancel``: the user asked; the task ends ``cancelled``.
- ``lease_lost``: the heartbeat found another worker owns it now; it is stopped and nothing is
  reported (any report would be rejected as stale anyway).
- shutdown (:meth:`Consumer.stop` then the drain deadline): tasks not started yet, and those
  still running at the deadline, are ``interrupted``: back to the front of their queue, the
  attempt not spent.

Metrics: each claimed task carries the :class:`~taskqueue.metrics.TaskCounts` of its type and
priority; the slot observes its wait and run time, and the report writer counts the outcome
from the state ``finish.lua`` answered (retried, dead-lettered, cancelled ...), so the counters
agree with Redis. Nothing per task locks or looks up labels.
"""

from taskqueue.daemon.consumer.service import FINAL_REPORT_TIMEOUT, IDLE_RECHECK, Consumer

__all__ = ["FINAL_REPORT_TIMEOUT", "IDLE_RECHECK", "Consumer"]
