"""`adain_jax.serve.cache`: a byte-bounded LRU of style uploads and statistics; a style is encoded
once however many requests use it, and a request may name a style the server has by its hash."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from adain_jax.io import weights as weights_lib
from adain_jax.serve import request as request_lib
from adain_jax.serve.app import create_app
from adain_jax.serve.cache import StyleCache

from helpers import write_image
from test_serve import LocalServer, exchange, multipart, read

up = request_lib.Upload


def test_the_least_recently_used_entries_go_first_when_the_bytes_run_out():
    cache = StyleCache(max_bytes=300)
    a, b, c = (up("style", "", bytes([i]) * 100) for i in range(3))
    for item in (a, b, c):
        cache.remember(item)
    assert cache.nbytes == 300 and len(cache) == 3
    assert cache.upload(a.digest).data == a.data  # a is now the most recently used
    cache.remember(up("style", "", b"d" * 100))
    assert cache.upload(b.digest) is None  # b was the least recently used
    assert cache.upload(a.digest) is not None and cache.upload(c.digest) is not None
    assert cache.nbytes == 300
    cache.remember(up("style", "", b"e" * 301))  # larger than the whole budget: not kept, nothing evicted
    assert len(cache) == 3


def test_statistics_are_computed_once_per_style_size_and_crop():
    counts = {"hit": 0, "miss": 0}
    cache = StyleCache(max_bytes=2**20, on_hit=lambda: counts.__setitem__("hit", counts["hit"] + 1),
                       on_miss=lambda: counts.__setitem__("miss", counts["miss"] + 1))
    style = up("style", "s.png", b"bytes")
    calls = []

    def compute():
        calls.append(1)
        return np.zeros((1, 512), np.float32), np.ones((1, 512), np.float32)

    for _ in range(3):
        cache.moments(style, 512, False, compute)
    cache.moments(style, 256, False, compute)  # another size: other statistics
    cache.moments(up("style 2", "other-name.png", b"bytes"), 512, False, compute)  # same bytes: a hit
    assert len(calls) == 2 and counts == {"hit": 3, "miss": 2}
    assert cache.nbytes == 2 * 2 * 512 * 4


def test_resolve_puts_the_named_uploads_in_place_and_refuses_unknown_or_malformed_hashes():
    cache = StyleCache(max_bytes=2**20)
    first, second = up("style", "first.png", b"1"), up("style", "second.png", b"2")
    digest = cache.remember(first)
    assert digest == hashlib.sha256(b"1").hexdigest()
    items = [("content", up("content", "c.png", b"c")), ("style", second), ("style_hash", digest.upper()),
             ("alpha", "0.5")]
    resolved = cache.resolve(items)
    assert [(name, getattr(v, "filename", v)) for name, v in resolved] == [
        ("content", "c.png"), ("style", "second.png"), ("style", "first.png"), ("alpha", "0.5")]
    with pytest.raises(request_lib.RequestError) as unknown:
        cache.resolve([("style_hash", "0" * 64)])
    assert unknown.value.status == 404 and "upload the image again" in unknown.value.message
    with pytest.raises(request_lib.RequestError) as malformed:
        cache.resolve([("style_hash", "abc")])
    assert malformed.value.status == 400 and "64 hexadecimal digits" in malformed.value.message


def _counter(app, name) -> float:
    metric = getattr(app.state.metrics, name)
    return next(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))


def test_a_style_named_by_its_hash_gives_the_same_image_and_is_encoded_once(weights_dir, images):
    app = create_app(weights_lib.load_weights(weights_dir), description="test", is_random=False, max_size=64)
    local = LocalServer(app).start()
    try:
        sizes = [("content_size", "0"), ("style_size", "0"), ("alpha", "0.7")]
        body, content_type = multipart([("content", read(images["content"])), ("style", read(images["style"])),
                                        *sizes])
        status, headers, uploaded = exchange(local.port, "POST", "/api/stylize", body, {"Content-Type": content_type})
        assert status == 200
        digest = hashlib.sha256(images["style"].read_bytes()).hexdigest()
        assert headers["x-style-hashes"] == digest
        body, content_type = multipart([("content", read(images["content"])), ("style_hash", digest), *sizes])
        status, headers, named = exchange(local.port, "POST", "/api/stylize", body, {"Content-Type": content_type})
        assert status == 200 and named == uploaded
        assert headers["content-disposition"] == 'inline; filename="content_stylized_style.png"'
        assert (_counter(app, "cache_misses"), _counter(app, "cache_hits")) == (1, 1)

        body, content_type = multipart([("content", read(images["content"])), ("style_hash", "f" * 64), *sizes])
        status, _, answer = exchange(local.port, "POST", "/api/stylize", body, {"Content-Type": content_type})
        assert status == 404 and "does not have that style" in json.loads(answer)["error"]
    finally:
        local.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_images")
    return {"content": write_image(root / "content.png", 40, 48, seed=1),
            "style": write_image(root / "style.png", 32, 32, seed=2)}
