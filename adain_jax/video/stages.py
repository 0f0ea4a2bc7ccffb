"""Three overlapping stages (read -> compute -> write) with bounded queues and one shutdown path.

`Stages` runs the reader and the writer on their own threads and the compute stage on the calling
thread (device programs are dispatched from it). Each hand-over queue holds at most ``depth`` items,
so a fast reader waits for a slow device instead of piling items up. The first exception in any
stage - or a KeyboardInterrupt in the calling thread - stops every stage, and `Stages.run` raises
it once all threads have ended; what the stages wrote is then the caller's to discard.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_POLL_S = 0.1  # how often a waiting stage looks whether the run was stopped
_JOIN_S = 10.0  # how long a failed run waits for a stage stuck in a blocking call (daemon threads)


class Stopped(Exception):
    """Raised inside a stage when another stage failed or the run was interrupted."""


_DONE = object()  # the end of a queue's items


class Stages:
    """``read()`` yields items; ``compute(items)`` turns an iterator of them into an iterator of
    results (it may hold some back, e.g. to overlap device work); ``write(result)`` consumes each."""

    def __init__(self, read: Callable[[], Iterable], compute: Callable[[Iterator], Iterable],
                 write: Callable[[Any], None], *, depth: int = 2, name: str = "stages"):
        self._read, self._compute, self._write = read, compute, write
        self._to_compute: queue.Queue = queue.Queue(depth)
        self._to_write: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._name = name

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)
        self._stop.set()

    def _put(self, q: queue.Queue, item: Any) -> None:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise Stopped

    def _items(self, q: queue.Queue) -> Iterator:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                item = q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            yield item

    def _forward(self, items: Iterable, q: queue.Queue) -> None:
        for item in items:
            self._put(q, item)
        self._put(q, _DONE)

    def _drain(self) -> None:
        for item in self._items(self._to_write):
            self._write(item)

    def _thread(self, body: Callable[[], None], role: str) -> threading.Thread:
        def run():
            try:
                body()
            except Stopped:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread, which raises it
                self._fail(e)

        return threading.Thread(target=run, name=f"{self._name}-{role}", daemon=True)

    def run(self) -> None:
        """Runs the three stages to the end; raises the first error of any of them (nothing on success)."""
        threads = [self._thread(lambda: self._forward(self._read(), self._to_compute), "read"),
                   self._thread(self._drain, "write")]
        for t in threads:
            t.start()
        try:
            self._forward(self._compute(self._items(self._to_compute)), self._to_write)
            for t in threads:
                t.join()
        except Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt too: every stage must stop
            self._fail(e)
        finally:
            for t in threads:  # at once on success; a stage stuck in a blocking call is left (daemon)
                t.join(_JOIN_S)
        if self._errors:
            raise self._errors[0]
