"""The dashboard's static files, read from the package once and kept in memory (with a gzip
copy), served with an ETag so a browser revalidates rather than downloads them again."""

from __future__ import annotations

import gzip
import hashlib
from importlib.resources import files
from typing import Final

import attrs

TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


@attrs.frozen
class StaticFile:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def load_static() -> dict[str, StaticFile]:
    """Every file of ``static/`` by name."""
    found: dict[str, StaticFile] = {}
    for entry in files("taskqueue.api.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        found[entry.name] = StaticFile(body, gzip.compress(body, 9, mtime=0), TYPES[suffix], etag)
    return found
