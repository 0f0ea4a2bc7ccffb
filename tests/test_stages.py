"""adain_jax.video.stages: read -> compute -> write with bounded queues; an error anywhere stops all."""

from __future__ import annotations

import threading
import time

import pytest

from adain_jax.video import stages


def _doubled(items):
    for x in items:
        yield 2 * x


def test_every_item_goes_through_the_three_stages_in_order():
    written = []
    stages.Stages(lambda: iter(range(20)), _doubled, written.append, depth=2).run()
    assert written == [2 * i for i in range(20)]


def test_a_fast_reader_waits_for_a_slow_compute_stage():
    read, ahead = [0], []

    def reader():
        for i in range(12):
            read[0] += 1
            yield i

    def slow(items):
        for n, x in enumerate(items, 1):
            time.sleep(0.02)
            ahead.append(read[0] - n)
            yield x

    stages.Stages(reader, slow, lambda x: None, depth=2).run()
    assert max(ahead) <= 2 + 1, ahead  # the queue, plus the item the reader holds while it waits


@pytest.mark.parametrize("where", ["read", "compute", "write"])
@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_error_in_any_stage_stops_every_stage_and_is_raised(where, error):
    produced, written = [0], []

    def reader():
        for i in range(10_000):  # far more than the queues hold: the reader must be stopped
            if where == "read" and i == 3:
                raise error
            produced[0] += 1
            yield i

    def compute(items):
        for i, x in enumerate(items):
            if where == "compute" and i == 3:
                raise error
            yield x

    def write(x):
        if where == "write" and len(written) == 3:
            raise error
        written.append(x)

    before = threading.active_count()
    with pytest.raises(type(error)):
        stages.Stages(reader, compute, write, depth=2).run()
    assert threading.active_count() == before  # no stage thread is left running
    assert produced[0] < 50 and len(written) <= 3
