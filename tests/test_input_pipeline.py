"""train.input_pipeline: deterministic, resumable, host-sharded image streams from TFDS data sources."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import write_image
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
    content = ip.open_source(str(make_folder(root / "content", 5, seed=1)), kind="content", data_dir=data_dir)
    style = ip.open_source(str(make_folder(root / "style", 3, seed=2)), kind="style", data_dir=data_dir)
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
    source = ip.open_source(str(root), kind="style", data_dir=data_dir)
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
    stream = ip.ImageStream(ip.open_source(str(root), kind="style", data_dir=data_dir), seed=0, stream=0,
                            image_size=32, crop_size=32)
    with pytest.raises(RuntimeError, match="could be decoded"):
        stream.sample(0)


def test_decode_converts_modes_and_accepts_decoded_arrays():
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        buf = io.BytesIO()
        Image.new(mode, (5, 4)).save(buf, format="TIFF")
        img = ip.decode_rgb(buf.getvalue())
        assert img.mode == "RGB" and img.size == (5, 4)
    array = np.zeros((4, 5, 3), np.uint8)
    assert ip.decode_rgb(array).size == (5, 4)
    assert ip.decode_rgb(np.zeros((4, 5, 1), np.uint8)).mode == "RGB"
    with pytest.raises(Exception):
        ip.decode_rgb(b"nope")


def test_crop_larger_than_resize_is_rejected(sources):
    with pytest.raises(SetupError, match="crop_size"):
        streams(sources, size=16, crop=24)


# --------------------------------------------------------------------------------------------------
# TFDS datasets by name: prepared array_record files, read without the dataset's code.
# --------------------------------------------------------------------------------------------------

with tfds.core.registered.skip_registration():

    class FakeCoco(tfds.core.GeneratorBasedBuilder):
        """Stands in for a catalogue dataset such as coco/2017: an image plus other features."""

        VERSION = tfds.core.Version("1.2.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2017")]
        code_path = None

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "label": tfds.features.ClassLabel(num_classes=3),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6), "validation": self._generate_examples(2)}

        def _generate_examples(self, n):
            rng = np.random.default_rng(n)
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)).save(buf, format="JPEG")
                data = buf.getvalue() if i != 3 else b"corrupt jpeg"
                yield i, {"image": data, "image/filename": f"{i:012d}.jpg", "label": i % 3}


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("catalogue")
    FakeCoco(config="2017", data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def test_tfds_name_reads_prepared_dataset_without_its_code(catalogue_dir, caplog):
    source = ip.open_source("fake_coco/2017", kind="content", data_dir=catalogue_dir)
    assert len(source) == 6 and source.file_name_key == "image/filename"
    assert source.fingerprint.startswith("tfds:fake_coco/2017/1.2.0/train/6")
    stream = ip.ImageStream(source, seed=0, stream=0, image_size=32, crop_size=32)
    samples = [stream.sample(k) for k in range(12)]  # record 3 is corrupt: skipped, with its name logged
    assert all(s.shape == (32, 32, 3) for s in samples)
    assert stream.skipped >= 1 and any("000000000003.jpg" in r.getMessage() for r in caplog.records)
    val = ip.open_source("fake_coco/2017", kind="content", data_dir=catalogue_dir, split="validation")
    assert len(val) == 2
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("spec, message", [
    ("coco/2017", "no prepared TFDS dataset"),
    ("fake_coco/2017", "no split 'test'"),
    ("/no/such/folder", "no such folder"),
    ("Not A Name!", "not a TFDS dataset name"),
    ("", "config.content is empty"),
])
def test_bad_specs_raise_one_line(catalogue_dir, spec, message):
    split = "test" if spec == "fake_coco/2017" else "train"
    with pytest.raises(SetupError, match=message) as err:
        ip.open_source(spec, kind="content", data_dir=catalogue_dir, split=split)
    assert "\n" not in str(err.value)


def test_folder_or_name():
    assert ip.is_folder_spec("/data/wikiart") and ip.is_folder_spec("./images") and ip.is_folder_spec("~/x")
    assert not ip.is_folder_spec("coco/2017") and not ip.is_folder_spec("imagenet2012:5.1.0")


def test_hide_accelerators_from_tensorflow_is_a_no_op_without_it():
    ip.hide_accelerators_from_tensorflow()
    assert "tensorflow" not in sys.modules


def test_fixed_images_for_the_sample_grid(sources):
    content, _ = streams(sources)
    images = ip.fixed_images(content, 3, 16)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, ip.fixed_images(content, 3, 16))
