"""Rates as people write them (``100/s``, ``1000/min``, ``5/10s``): the one definition of the
text a policy's ``rate_limit`` takes, its pattern and how it reads as a count per interval.

The text is what operators type and see; Redis holds ``count/interval_ms`` (see
``taskqueue/broker/policy.py``), which the claim script turns into a task every
``interval_ms / count`` milliseconds.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

#: Tasks per interval at most, and the interval's bounds: a millisecond to a day.
MAX_RATE_COUNT: Final = 1_000_000_000
MIN_INTERVAL_MS: Final = 1
MAX_INTERVAL_MS: Final = 86_400_000

_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
#: The text of a rate: a count, '/', an optional number and a unit.
RATE_PATTERN: Final = r"^[1-9][0-9]{0,9}/([0-9]{1,9}(\.[0-9]{1,3})?)?(ms|s|min|m|h|d)$"
RATE_RULE: Final = (
    "a count per interval, like 100/s, 1000/min or 5/10s (units ms, s, m or min, h, d; the"
    " interval 1ms to 1d)"
)
_RATE = re.compile(RATE_PATTERN)


@attrs.frozen
class Rate:
    """``count`` tasks per ``interval_ms``."""

    count: int
    interval_ms: int

    @property
    def spacing_ms(self) -> float:
        """Milliseconds between two tasks at this rate, evenly spread."""
        return self.interval_ms / self.count

    def __str__(self) -> str:
        for unit in ("d", "h", "min", "s"):
            if self.interval_ms == _UNITS_MS[unit]:
                return f"{self.count}/{unit}"
        for unit in ("d", "h", "min", "s"):
            if self.interval_ms % _UNITS_MS[unit] == 0:
                return f"{self.count}/{self.interval_ms // _UNITS_MS[unit]}{unit}"
        return f"{self.count}/{self.interval_ms}ms"


def parse_rate(text: str) -> Rate:
    """The rate ``text`` writes; ValueError saying what a rate looks like otherwise."""
    match = _RATE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rate: {RATE_RULE}")
    count = int(text.strip().split("/", 1)[0])
    number, unit = match.group(1), match.group(3)
    interval_ms = round(float(number or 1) * _UNITS_MS[unit])
    if count > MAX_RATE_COUNT or not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
        raise ValueError(f"{text!r} is out of range: {RATE_RULE}, at most {MAX_RATE_COUNT:,}")
    return Rate(count, interval_ms)


def encode_rate(text: str) -> str:
    """The rate as Redis holds it: ``count/interval_ms``."""
    rate = parse_rate(text)
    return f"{rate.count}/{rate.interval_ms}"


def decode_rate(stored: str) -> str:
    """A stored ``count/interval_ms`` as people write it."""
    count, interval_ms = stored.split("/", 1)
    return str(Rate(int(count), int(interval_ms)))
