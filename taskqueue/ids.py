"""Task ids: UUIDv7 strings, so ids sort by creation time and index well in any database."""

from __future__ import annotations

import os


def new_task_ids(count: int, now_ms: int) -> list[str]:
    """``count`` UUIDv7s (RFC 9562) for ``now_ms``: 48 bits of Unix milliseconds, 74 random.

    Made in a batch because a batch submit makes thousands at once: one ``urandom`` call and
    one shared time prefix keep the cost near a microsecond an id.
    """
    ms = (now_ms & 0xFFFF_FFFF_FFFF).to_bytes(6).hex()
    head = f"{ms[:8]}-{ms[8:]}-7"
    noise = os.urandom(10 * count).hex()
    variant = "89ab"
    ids = []
    for i in range(0, 20 * count, 20):
        r = noise[i : i + 20]
        # 12 bits of rand_a; the variant bits 0b10 and 62 bits of rand_b.
        ids.append(f"{head}{r[:3]}-{variant[int(r[3], 16) & 3]}{r[4:7]}-{r[7:19]}")
    return ids


def new_task_id(now_ms: int) -> str:
    return new_task_ids(1, now_ms)[0]
