"""Whole numbers read from text a client sent: ASCII digits only, and bounded.

``int()`` also takes other scripts' digits (``"¹"``, Arabic-Indic ones), underscores, signs
and surrounding whitespace, and raises past 4,300 digits; ``str.isdigit()`` says yes to ``"¹"``
and then ``int()`` says no. Text from outside parsed with them gave 500s and values no server
issued. This is the one parser of a number in a cursor, a header or a path.
"""

from __future__ import annotations

import re
from typing import Final

#: The most digits read: 18 always fit a signed 64-bit integer, which is what Redis takes.
MAX_DIGITS: Final = 18
_NATURAL = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}")


def natural(text: str | bytes) -> int | None:
    """``text`` as a whole number >= 0 if it is 1 to 18 ASCII digits and nothing else; else None."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return int(text) if _NATURAL.fullmatch(text) else None
