"""train.input_pipeline: deterministic, resumable, host-sharded image streams over data sources."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adain_jax.io import images as image_io
from helpers import write_image
from train import data_sources
from train import input_pipeline as ip
from train.errors import SetupError


def make_folder(root, n, seed=0, sizes=((40, 48), (36, 30), (50, 40), (33, 64))):
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        write_image(root / f"img_{i:02d}.jpg", h, w, seed=seed * 100 + i)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("images")
    content = data_sources.open_source(str(make_folder(root / "content", 5, seed=1)), kind="content", data_dir=data_dir)
    style = data_sources.open_source(str(make_folder(root / "style", 3, seed=2)), kind="style", data_dir=data_dir)
    return content, style


def streams(sources, seed=0, size=32, crop=24, keep_aspect=True):
    content, style = sources
    kw = dict(seed=seed, image_size=size, crop_size=crop, keep_aspect=keep_aspect)
    return ip.ImageStream(content, stream=ip.CONTENT_STREAM, **kw), ip.ImageStream(style, stream=ip.STYLE_STREAM, **kw)


def take(loader, n):
    return [next(loader) for _ in range(n)]


def test_samples_are_uint8_crops_and_deterministic(sources):
    c1, s1 = streams(sources)
    c2, _ = streams(sources)
    for k in (0, 1, 7, 23):
        a = c1.sample(k)
        assert a.shape == (24, 24, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, c2.sample(k))
    other, _ = streams(sources, seed=1)
    assert any(not np.array_equal(c1.sample(k), other.sample(k)) for k in range(5))
    assert not np.array_equal(c1.sample(0), s1.sample(0))  # the two streams are independent


def test_each_epoch_is_a_permutation_and_epochs_differ(sources):
    content, _ = streams(sources)
    n = len(content.source)
    epochs = [[content.record_index(e * n + i) for i in range(n)] for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(n))
    assert len({tuple(o) for o in epochs}) > 1


def test_resize_keeps_aspect_then_crops():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 80, 3), dtype=np.uint8))
    out = ip.resize_and_crop(image, size=32, crop=32, keep_aspect=True, rng=np.random.default_rng(1))
    assert out.shape == (32, 32, 3)
    # Shorter side 40 -> 32 gives 32x64; a crop at column c equals the resized image's columns c..c+32.
    resized = np.asarray(image.resize((64, 32), Image.Resampling.BILINEAR))
    matches = [c for c in range(33) if np.array_equal(resized[:, c:c + 32], out)]
    assert matches
    square = ip.resize_and_crop(image, size=32, crop=32, keep_aspect=False, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(square, np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR)))


def test_loader_resumes_exactly_at_any_position(sources):
    c, s = streams(sources)
    with ip.BatchLoader(c, s, global_batch=2, num_workers=2, prefetch=2) as loader:
        straight = take(loader, 6)
    c, s = streams(sources)  # fresh streams: nothing cached carries over, like a new process
    with ip.BatchLoader(c, s, global_batch=2, position=3 * 2, num_workers=1, prefetch=1) as loader:
        resumed = take(loader, 3)
        assert loader.position == 6 * 2
    for a, b in zip(straight[3:], resumed):
        for key in ("content", "style"):
            np.testing.assert_array_equal(a[key], b[key])


def test_hosts_get_disjoint_shards_of_the_same_global_batch(sources):
    c, s = streams(sources)
    with ip.BatchLoader(c, s, global_batch=4, num_workers=1) as loader:
        whole = take(loader, 2)
    parts = []
    for host in range(2):
        c, s = streams(sources)
        with ip.BatchLoader(c, s, global_batch=4, process_index=host, process_count=2, num_workers=1) as loader:
            parts.append(take(loader, 2))
    for i in range(2):
        for key in ("content", "style"):
            assert parts[0][i][key].shape[0] == 2
            np.testing.assert_array_equal(np.concatenate([parts[0][i][key], parts[1][i][key]]), whole[i][key])
    with pytest.raises(SetupError, match="divisible"):
        ip.BatchLoader(c, s, global_batch=3, process_count=2)


def test_undecodable_images_are_skipped_and_counted(tmp_path, data_dir, caplog):
    root = make_folder(tmp_path / "mixed", 2)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "truncated.png").write_bytes((root / "img_00.jpg").read_bytes()[:100])
    source = data_sources.open_source(str(root), kind="style", data_dir=data_dir)
    assert len(source) == 4
    stream = ip.ImageStream(source, seed=0, stream=0, image_size=32, crop_size=32)
    with ip.BatchLoader(stream, stream, global_batch=4, num_workers=2) as loader:
        batches = take(loader, 3)  # 12 samples per stream: every record is met, bad ones several times
        assert loader.skipped > 0
    assert all(b["style"].shape == (4, 32, 32, 3) for b in batches)
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)
    # The same sample is replaced by the same image every time.
    again = ip.ImageStream(source, seed=0, stream=0, image_size=32, crop_size=32)
    for k in range(12):
        np.testing.assert_array_equal(again.sample(k), stream.sample(k))


def test_all_undecodable_is_an_error_not_a_hang(tmp_path, data_dir):
    root = tmp_path / "junk"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"junk")
    stream = ip.ImageStream(data_sources.open_source(str(root), kind="style", data_dir=data_dir), seed=0, stream=0,
                            image_size=32, crop_size=32)
    with pytest.raises(RuntimeError, match="could be decoded"):
        stream.sample(0)


def _source(values) -> data_sources.ImageSource:
    records = [{"image": v, "file_name": f"dir/{i}.png".encode()} for i, v in enumerate(values)]
    return data_sources.ImageSource("test", records, "image", "file_name", "test/fp")


def test_decode_record_converts_modes_and_accepts_decoded_arrays(tmp_path):
    encoded = []
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        buf = io.BytesIO()
        Image.new(mode, (5, 4)).save(buf, format="TIFF")
        encoded.append(buf.getvalue())
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    source = _source([*encoded, np.zeros((4, 5, 3), np.uint8), grey[..., None], np.asarray(encoded[0], object),
                      b"nope"])
    for i in range(len(encoded)):
        img = ip.decode_record(source, i)
        assert img.mode == "RGB" and img.size == (5, 4)
    assert ip.decode_record(source, 5).size == (5, 4)
    np.testing.assert_array_equal(np.asarray(ip.decode_record(source, 6))[..., 1], grey)  # grey to RGB, unscaled
    assert ip.decode_record(source, 7).size == (5, 4)  # bytes inside a 0-d array, as some TFDS readers give
    with pytest.raises(image_io.ImageError, match=r"^dir/8\.png: not an image file"):
        ip.decode_record(source, 8)  # the record's file name in the message


def test_crop_larger_than_resize_is_rejected(sources):
    with pytest.raises(SetupError, match="crop_size"):
        streams(sources, size=16, crop=24)


def test_fixed_images_for_the_sample_grid(sources):
    content, _ = streams(sources)
    images = ip.fixed_images(content, 3, 16)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, ip.fixed_images(content, 3, 16))


def test_loader_takes_any_named_streams(sources):
    """One stream under its own key (the StyleGAN run's ``{"images": stream}``): sample k of the stream."""
    c, _ = streams(sources)
    with ip.BatchLoader({"images": c}, global_batch=3, position=2, num_workers=1, prefetch=1) as loader:
        batches = take(loader, 2)
        assert loader.skipped == 0 and loader.position == 2 + 2 * 3
    assert all(set(b) == {"images"} for b in batches)
    c, _ = streams(sources)
    np.testing.assert_array_equal(batches[1]["images"], np.stack([c.sample(k) for k in range(5, 8)]))
