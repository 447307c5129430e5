"""JSON in and out, fast: orjson, in one place so every record is encoded the same way."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> str:
    """Compact JSON text; raises TypeError for values JSON cannot represent."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"not JSON-serialisable: {exc}") from None


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
