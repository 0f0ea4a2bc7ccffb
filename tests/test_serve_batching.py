"""`adain_jax.serve.batching` and the worker's batches: the queue hands out what waits (up to the
batch size), same-size requests run together, and each answer is byte-for-byte the one its request
gets alone."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from adain_jax.serve import batching
from adain_jax.serve import request as request_lib
from adain_jax.serve import worker as worker_lib

from helpers import write_image

TIMEOUT = 120


def test_take_returns_what_waits_up_to_the_batch_size_in_order():
    queue = batching.BatchQueue(capacity=10, max_batch=3, max_wait=0.0)
    for i in range(5):
        queue.put(i)
    assert queue.take() == [0, 1, 2]
    assert queue.take() == [3, 4]
    assert len(queue) == 0


def test_take_waits_for_company_only_up_to_max_wait():
    queue = batching.BatchQueue(capacity=10, max_batch=4, max_wait=0.2)
    queue.put("first")
    threading.Timer(0.05, queue.put, args=("second",)).start()
    assert queue.take() == ["first", "second"]  # the second arrived within the wait, the batch is not full


def test_a_full_queue_refuses_and_a_closed_one_hands_back_what_waited():
    queue = batching.BatchQueue(capacity=2)
    queue.put("a")
    queue.put("b")
    with pytest.raises(batching.Full):
        queue.put("c")
    assert queue.close() == ["a", "b"]
    with pytest.raises(batching.Closed):
        queue.put("d")
    assert queue.take() == []  # a closed, empty queue ends the worker's loop


def test_group_keeps_order_caps_runs_and_runs_keyless_items_alone():
    items = [("a", 1), ("b", 2), ("a", 3), (None, 4), ("a", 5), ("b", 6)]
    runs = batching.group(items, key=lambda item: item[0], size=2)
    assert [[n for _, n in run] for run in runs] == [[1, 3], [2, 6], [4], [5]]


def test_pad_repeats_the_last_row():
    padded = batching.pad(np.array([[1, 2], [3, 4]]), 4)
    assert padded.tolist() == [[1, 2], [3, 4], [3, 4], [3, 4]]
    assert batching.pad(np.ones((4, 2)), 4).shape == (4, 2)


def _job(content: bytes, style: bytes, alpha: float, **options) -> request_lib.Job:
    up = request_lib.Upload
    return request_lib.Job(up("content", "c.png", content), (up("style", "s.png", style),), None,
                           request_lib.Options(alpha=alpha, content_size=0, style_size=0, **options))


def _batch_sizes(worker) -> list[float]:
    """(count, sum) of the batch-size histogram."""
    samples = {s.name: s.value for m in worker.metrics.batch_size.collect() for s in m.samples}
    return [samples["adain_jax_serve_batch_size_count"], samples["adain_jax_serve_batch_size_sum"]]


def test_a_batch_answers_each_request_what_it_gets_alone(random_weights, tmp_path):
    contents = [write_image(tmp_path / f"c{i}.png", 40, 48, seed=10 + i).read_bytes() for i in range(4)]
    styles = [write_image(tmp_path / f"s{i}.png", 32, 32, seed=20 + i).read_bytes() for i in range(4)]
    alphas = (1.0, 0.8, 0.5, 0.3)
    jobs = [_job(contents[i], styles[i], alphas[i]) for i in range(4)]
    # Interpolation cannot share a batch: it runs alone, in the same take.
    up = request_lib.Upload
    mixed = request_lib.Job(up("content", "c.png", contents[0]), (up("style 1", "a.png", styles[0]),
                            up("style 2", "b.png", styles[1])), None,
                            request_lib.Options(style_weights=(1.0, 1.0), content_size=0, style_size=0))

    worker = worker_lib.Worker(random_weights, max_size=64, max_batch=4, max_wait=0.0)
    futures = [worker.submit(job) for job in [*jobs, mixed]]  # all wait before the thread starts
    worker.start()
    try:
        together = [f.result(timeout=TIMEOUT) for f in futures]
        assert _batch_sizes(worker) == [2, 5]  # one batch of 4, then the interpolation alone
        alone = [worker.submit(job).result(timeout=TIMEOUT) for job in jobs]
        assert _batch_sizes(worker) == [6, 9]
    finally:
        worker.stop()
    for i in range(4):
        assert together[i].dtype == np.uint8 and together[i].shape == (40, 48, 3)
        assert np.array_equal(together[i], alone[i]), f"request {i}"
    assert len({a.tobytes() for a in alone}) == 4  # different answers, so a mix-up would show
    assert not np.array_equal(together[4], together[0])


def test_requests_of_different_sizes_run_in_separate_batches(random_weights, tmp_path):
    style = write_image(tmp_path / "s.png", 32, 32, seed=2).read_bytes()
    small = write_image(tmp_path / "small.png", 40, 48, seed=1).read_bytes()
    other = write_image(tmp_path / "other.png", 48, 40, seed=1).read_bytes()
    worker = worker_lib.Worker(random_weights, max_size=64, max_batch=4, max_wait=0.0)
    futures = [worker.submit(_job(data, style, 1.0)) for data in (small, other, small)]
    worker.start()
    try:
        shapes = [f.result(timeout=TIMEOUT).shape for f in futures]
    finally:
        worker.stop()
    assert shapes == [(40, 48, 3), (48, 40, 3), (40, 48, 3)]
    assert _batch_sizes(worker) == [2, 3]  # [small, small] and [other]


def test_a_bad_request_in_a_take_fails_alone(random_weights, tmp_path):
    style = write_image(tmp_path / "s.png", 32, 32, seed=2).read_bytes()
    good = write_image(tmp_path / "c.png", 40, 48, seed=1).read_bytes()
    worker = worker_lib.Worker(random_weights, max_size=64, max_batch=4, max_wait=0.0)
    futures = [worker.submit(_job(good, style, 1.0)), worker.submit(_job(b"not an image", style, 1.0))]
    worker.start()
    try:
        assert futures[0].result(timeout=TIMEOUT).shape == (40, 48, 3)
        with pytest.raises(request_lib.RequestError) as error:
            futures[1].result(timeout=TIMEOUT)
    finally:
        worker.stop()
    assert error.value.status == 415


def test_png_bytes_round_trips():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(worker_lib.png_bytes(pixels)))), pixels)


def test_stop_cancels_what_waits_and_ends_the_thread(random_weights):
    worker = worker_lib.Worker(random_weights, queue_size=4, warm=())
    future = worker.submit(_job(b"", b"", 1.0))  # not started: it waits
    worker.stop()
    assert future.cancelled()
    with pytest.raises(request_lib.RequestError) as error:
        worker.submit(_job(b"", b"", 1.0))
    assert error.value.status == 503 and "shutting down" in error.value.message
