"""Redis Cluster hash slots: which of the 16384 slots a key belongs to (the one definition)."""

from __future__ import annotations

from binascii import crc_hqx

#: How many hash slots a Redis Cluster has.
SLOTS = 16384


def hash_slot(key: str | bytes) -> int:
    """The slot of ``key``: CRC16 (XMODEM, which ``crc_hqx`` from 0 is) of its hash tag, the
    part between the first ``{`` and the next ``}`` when that is not empty, else of the key."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc_hqx(data, 0) % SLOTS
