"""How waiting requests become batches: a bounded queue that hands out up to ``max_batch`` at once,
the grouping of those into runs of one program, and the padding of a run to the program's batch.

Batches are of one exact image size, and every batch of a size runs the one program of
``max_batch`` images (a short batch is padded by repeating its last image), for two measured reasons:

- XLA's convolutions round differently at different batch sizes (on CPU, 1 vs 4 images of 64x80:
  up to 2e-7, enough to change a byte of the PNG), while within one program each image gets the
  same bits whatever its neighbours and its place in the batch. One batch size per image size is
  what keeps an answer byte-for-byte the same whether its request came alone or in a crowd.
- Padding an image to a larger size bucket would change its pixels, not only their rounding (the
  network pads by reflection at the image's border, and AdaIN's statistics would count the padding),
  so the answers would no longer be those of ``adain-jax stylize``. The size buckets are therefore
  the exact sizes, and the programs are one per size, as with one request at a time.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np


class Full(Exception):
    """The queue holds ``capacity`` items already."""


class Closed(Exception):
    """The queue was closed (the server is stopping)."""


class BatchQueue:
    """A bounded FIFO whose `take` returns the next items, up to ``max_batch`` of them, waiting up to
    ``max_wait`` seconds after the first for the others to arrive."""

    def __init__(self, capacity: int, max_batch: int = 1, max_wait: float = 0.0):
        self.capacity, self.max_batch, self.max_wait = int(capacity), max(1, int(max_batch)), float(max_wait)
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item) -> None:
        with self._cond:
            if self._closed:
                raise Closed()
            if len(self._items) >= self.capacity:
                raise Full()
            self._items.append(item)
            self._cond.notify_all()

    def take(self) -> list:
        """The next 1..max_batch items (blocks for the first); [] once closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self.max_batch > 1 and self.max_wait > 0 and not self._closed:
                deadline = time.monotonic() + self.max_wait
                while len(self._items) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            return [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]

    def close(self) -> list:
        """Refuse new items; returns the waiting ones (removed, for the caller to cancel)."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left


def group(items: Sequence, key: Callable[[Any], Hashable | None], size: int) -> list[list]:
    """``items`` in runs of at most ``size`` with equal ``key``, in order of first appearance; an item
    whose key is None runs alone."""
    runs: dict = {}
    out: list[list] = []
    for item in items:
        k = key(item)
        if k is None:
            out.append([item])
            continue
        run = runs.get(k)
        if run is None or len(run) == size:
            run = runs[k] = []
            out.append(run)
        run.append(item)
    return out


def pad(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with its last row repeated up to ``size`` rows (the padded results are dropped)."""
    n = array.shape[0]
    return array if n >= size else np.concatenate([array, np.repeat(array[-1:], size - n, axis=0)])
