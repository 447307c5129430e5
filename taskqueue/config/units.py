"""Units people write in configuration: durations (``250ms``, ``5s``, ``1m``), sizes (``64KiB``,
``1MiB``), and how to show values back, secrets masked, in the same words.

No attrs and no configuration here: plain functions, so plugins and the CLI can use them too.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "DURATION_HINT",
    "MASK",
    "SIZE_HINT",
    "format_duration",
    "format_size",
    "hide",
    "mask_url",
    "mask_url_value",
    "parse_duration",
    "parse_size",
]

MASK: Final = "***"


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)", re.ASCII)
_DURATION_TEXT = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+", re.ASCII)
DURATION_HINT: Final = "a duration like 250ms, 5s, 1m"

SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_TEXT = re.compile(rf"({_NUMBER})\s*([a-z]*)", re.ASCII | re.IGNORECASE)
SIZE_HINT: Final = "a size like 512, 64KiB, 1MiB"


def parse_duration(text: str | float) -> float:
    """Seconds from text like ``250ms``, ``5s``, ``1m``, ``1h``, ``1.5s``, ``2h30m``.

    Why units: ``succeeded = "24h"`` is easier to get right than ``86400``. A bare number
    (``5``, ``"5"``, ``0.5``) is seconds. Parts combine (``1m30s``); ``d`` is days. Negative,
    infinite and NaN values are refused with a ValueError, so a typo never becomes "forever".
    """
    seconds: float
    if isinstance(text, bool):
        raise ValueError(f"expected {DURATION_HINT}, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    elif isinstance(text, str):
        stripped = text.strip()
        if re.fullmatch(_NUMBER, stripped, re.ASCII):
            seconds = float(stripped)
        elif _DURATION_TEXT.fullmatch(stripped):
            parts = _DURATION_PART.findall(stripped)
            seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
        else:
            raise ValueError(f"expected {DURATION_HINT}, got {text!r}")
    else:
        raise ValueError(f"expected {DURATION_HINT}, got {text!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {DURATION_HINT}, got {text!r}")
    return seconds


def parse_size(text: str | int) -> int:
    """Bytes from text like ``512``, ``64KiB``, ``1MiB`` or ``1MB``.

    ``KB``/``MB``/``GB`` are powers of 1000 and ``KiB``/``MiB``/``GiB`` powers of 1024, as
    their standards say; units are case-insensitive. A fraction is fine when the result is a
    whole number of bytes (``1.5KiB`` is 1536). Raises ValueError otherwise.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected {SIZE_HINT}, got {text!r}")
    if isinstance(text, int):
        size = text
    elif isinstance(text, str):
        match = _SIZE_TEXT.fullmatch(text.strip())
        unit = match[2].lower() if match else None
        if match is None or unit not in SIZE_UNITS:
            raise ValueError(f"expected {SIZE_HINT}, got {text!r}")
        try:
            exact = Decimal(match[1]) * SIZE_UNITS[unit]
        except InvalidOperation:  # pragma: no cover - the regex admits only plain decimals
            raise ValueError(f"expected {SIZE_HINT}, got {text!r}") from None
        if exact != exact.to_integral_value():
            raise ValueError(f"expected a whole number of bytes, got {text!r}")
        size = int(exact)
    else:
        raise ValueError(f"expected {SIZE_HINT}, got {text!r}")
    if size < 0:
        raise ValueError(f"expected {SIZE_HINT}, got {text!r}")
    return size


def _decimal(number: float) -> str:
    """``number`` without float noise or a trailing ``.0``: 1.5 -> "1.5", 30.0 -> "30"."""
    return f"{number:.6f}".rstrip("0").rstrip(".")


def format_duration(seconds: float) -> str:
    """Short text for ``seconds`` that :func:`parse_duration` reads back: 5s, 1m, 2h30m, 250ms.

    Hours are the largest unit, so a day shows as ``24h``, the way operators write TTLs.
    """
    if seconds <= 0:
        return f"{_decimal(seconds)}s"
    if seconds < 1:
        return f"{_decimal(seconds * 1000)}ms"
    parts: list[str] = []
    rest = seconds
    for unit, length in (("h", 3600), ("m", 60)):
        count = int(rest // length)
        if count:
            parts.append(f"{count}{unit}")
            rest -= count * length
    if round(rest, 6):
        parts.append(f"{_decimal(rest)}s")
    return "".join(parts)


def format_size(size: int) -> str:
    """Short text for ``size`` bytes that :func:`parse_size` reads back: 2MiB, 1MB, 512B."""
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
        factor = SIZE_UNITS[unit.lower()]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# --------------------------------------------------------------------------------------------
# Masking secrets


def mask_url(url: str) -> str:
    """``url`` with any password (``redis://user:pw@host`` or ``?password=pw``) shown as ``***``.

    For logs and ``taskqueue config``: the host and database stay visible, the secret does not.
    A URL too broken to parse is masked whole rather than risk printing its password.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        url = url.replace(f"//{parts.netloc}", f"//{user}:{MASK}@{host}", 1)
    return re.sub(r"([?&]password=)[^&#]*", rf"\g<1>{MASK}", url)


def hide(value: object) -> object:
    """A secret's stand-in that still tells whether it is set (and how many tokens there are)."""
    if value is None:
        return None
    if isinstance(value, tuple | list):
        return [MASK] * len(value)
    return MASK


def mask_url_value(value: object) -> object:
    return mask_url(value) if isinstance(value, str) else hide(value)
