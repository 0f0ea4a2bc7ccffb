"""Style images and their encoder statistics kept across requests: one LRU, bounded in bytes.

Two kinds of entries share the budget:

    ("image", sha256)                    the uploaded bytes and file name, so a later request may name
                                         the style by its hash (the ``style_hash`` field) instead of
                                         uploading it again
    ("moments", sha256, size, crop)      its relu4_1 mean and std at that style_size and crop, so a
                                         popular style is encoded once however many requests use it

The hash is of the bytes as uploaded (`request.Upload.digest`). The worker thread computes moments;
the app's threads only look images up, so one lock around the dictionary is enough.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable
from typing import Any

from adain_jax.serve.request import RequestError, Upload

HASH_FIELD = "style_hash"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _nbytes(value: Any) -> int:
    if isinstance(value, Upload):
        return len(value.data) + len(value.filename)
    return sum(int(getattr(part, "nbytes", 0)) for part in value)  # (mean, std) arrays


class StyleCache:
    """A least-recently-used map of style uploads and statistics whose total size stays under ``max_bytes``."""

    def __init__(self, max_bytes: int, *, on_hit: Callable[[], None] | None = None,
                 on_miss: Callable[[], None] | None = None):
        self.max_bytes = int(max_bytes)
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._sizes: dict = {}
        self.nbytes = 0
        self._lock = threading.Lock()
        self._on_hit, self._on_miss = on_hit or (lambda: None), on_miss or (lambda: None)

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, key, value) -> None:
        size = _nbytes(value)
        if size > self.max_bytes:  # would evict everything and still not fit
            return
        with self._lock:
            if key in self._entries:
                self.nbytes -= self._sizes[key]
            self._entries[key], self._sizes[key] = value, size
            self._entries.move_to_end(key)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                old, _ = self._entries.popitem(last=False)
                self.nbytes -= self._sizes.pop(old)

    def _get(self, key):
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def remember(self, upload: Upload) -> str:
        """Keep a style upload so later requests can name it; returns its hash."""
        digest = upload.digest
        self._put(("image", digest), Upload("style", upload.filename, upload.data))
        return digest

    def upload(self, digest: str) -> Upload | None:
        return self._get(("image", digest))

    def moments(self, upload: Upload, size: int, crop: bool, compute: Callable[[], Any]):
        """The statistics of ``upload`` at (``size``, ``crop``), computed once while they stay cached."""
        key = ("moments", upload.digest, int(size), bool(crop))
        value = self._get(key)
        if value is not None:
            self._on_hit()
            return value
        self._on_miss()
        value = compute()
        self._put(key, value)
        return value

    def resolve(self, items: list) -> list:
        """Form ``(name, value)`` pairs with each ``style_hash`` field replaced, in place, by the style
        upload it names (so the styles keep their order).

        Raises RequestError 400 for a malformed hash, 404 for one this cache does not hold (it keeps
        recently used styles only: upload the image again).
        """
        out = []
        for name, value in items:
            if name == HASH_FIELD:
                if isinstance(value, Upload):
                    raise RequestError(400, f"field {HASH_FIELD!r} must be a plain value, not a file")
                digest = value.strip().lower()
                if not _HEX64.fullmatch(digest):
                    raise RequestError(400, f"{HASH_FIELD} must be 64 hexadecimal digits (a SHA-256), got {value!r}")
                upload = self.upload(digest)
                if upload is None:
                    raise RequestError(404, f"{HASH_FIELD} {digest}: this server does not have that style "
                                            "(it keeps recently used ones); upload the image again")
                out.append(("style", upload))
            else:
                out.append((name, value))
        return out
