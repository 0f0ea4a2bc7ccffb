"""`adain_jax.serve.metrics`: GET /api/metrics answers the Prometheus text format, and its numbers
follow what the server did (answers by status, batches, the style cache, compilations)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from adain_jax.serve.app import create_app

from helpers import write_image
from test_serve import LocalServer, exchange, post, read


def scrape(port) -> dict:
    status, headers, body = exchange(port, "GET", "/api/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_answers_batches_cache_and_compilations(random_weights, tmp_path):
    content = read(write_image(tmp_path / "c.png", 28, 36, seed=1))  # a size no other test compiles
    style = read(write_image(tmp_path / "s.png", 22, 26, seed=2))
    sizes = [("content_size", "0"), ("style_size", "0")]
    local = LocalServer(create_app(random_weights, description="test", is_random=False, max_size=64)).start()
    try:
        before = scrape(local.port)
        assert value(before, "adain_jax_serve_queue_depth") == 0
        assert post(local.port, [("content", content), ("style", style), *sizes])[0] == 200
        first = scrape(local.port)
        assert post(local.port, [("content", content), ("style", style), ("alpha", "0.5"), *sizes])[0] == 200
        assert post(local.port, [("content", content), ("style", style), ("alpha", "2"), *sizes])[0] == 400
        after = scrape(local.port)
    finally:
        local.stop()

    stylize = "adain_jax_serve_requests_total"
    assert value(after, stylize, endpoint="stylize", status="200") == 2
    assert value(after, stylize, endpoint="stylize", status="400") == 1
    assert value(after, stylize, endpoint="metrics", status="200") == 2  # the scrapes before this one
    assert value(after, "adain_jax_serve_request_seconds_count", endpoint="stylize") == 3
    assert value(after, "adain_jax_serve_batch_size_count") == 2 and value(after, "adain_jax_serve_batch_size_sum") == 2
    assert value(after, "adain_jax_serve_style_cache_misses_total") == 1
    assert value(after, "adain_jax_serve_style_cache_hits_total") == 1
    # One style: its mean and std (512 float32 each), and its upload (kept to be named by hash).
    assert value(after, "adain_jax_serve_style_cache_bytes") == 2 * 512 * 4 + len(style[1]) + len(style[0])
    compiled = "adain_jax_serve_compilations_total"
    assert value(first, compiled) >= value(before, compiled) + 2  # a new size: the style encoder and the stylizer
    assert value(after, compiled) == value(first, compiled)  # the same size again: nothing new
    assert value(after, "adain_jax_serve_compilation_seconds_total") > 0
