"""train.data_sources: a folder or a prepared TFDS dataset by name -> random-access image records."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from helpers import write_image
from train import data_sources, input_pipeline
from train.errors import SetupError


def test_folder_is_prepared_once_and_read_as_encoded_records(tmp_path):
    folder = tmp_path / "art"
    write_image(folder / "a" / "x.jpg", 40, 48, seed=1)
    write_image(folder / "y.png", 36, 30, seed=2)
    source = data_sources.open_source(str(folder), kind="style", data_dir=tmp_path / "tfds")
    assert len(source) == 2 and source.file_name_key == "file_name"
    names = sorted(source.records[i]["file_name"].decode() for i in range(2))
    assert names == ["a/x.jpg", "y.png"]
    assert all(isinstance(source.records[i]["image"], bytes) for i in range(2))  # still encoded
    assert source.describe() == {"spec": str(folder), "records": 2, "fingerprint": source.fingerprint}
    assert source.fingerprint.startswith("folder:art-") and source.fingerprint.endswith("/train/2")
    with pytest.raises(SetupError, match="not prepared"):  # what a non-building host sees before process 0 built
        data_sources.open_source(str(folder), kind="style", data_dir=tmp_path / "other", is_builder=False)
    again = data_sources.open_source(str(folder), kind="style", data_dir=tmp_path / "tfds", is_builder=False)
    assert again.fingerprint == source.fingerprint


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
    source = data_sources.open_source("fake_coco/2017", kind="content", data_dir=catalogue_dir)
    assert len(source) == 6 and source.file_name_key == "image/filename"
    assert source.fingerprint.startswith("tfds:fake_coco/2017/1.2.0/train/6")
    stream = input_pipeline.ImageStream(source, seed=0, stream=0, image_size=32, crop_size=32)
    samples = [stream.sample(k) for k in range(12)]  # record 3 is corrupt: skipped, with its name logged
    assert all(s.shape == (32, 32, 3) for s in samples)
    assert stream.skipped >= 1 and any("000000000003.jpg" in r.getMessage() for r in caplog.records)
    val = data_sources.open_source("fake_coco/2017", kind="content", data_dir=catalogue_dir, split="validation")
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
        data_sources.open_source(spec, kind="content", data_dir=catalogue_dir, split=split)
    assert "\n" not in str(err.value)


def test_folder_or_name():
    assert data_sources.is_folder_spec("/data/wikiart") and data_sources.is_folder_spec("./images") and data_sources.is_folder_spec("~/x")
    assert not data_sources.is_folder_spec("coco/2017") and not data_sources.is_folder_spec("imagenet2012:5.1.0")


def test_hide_accelerators_from_tensorflow_is_a_no_op_without_it():
    data_sources.hide_accelerators_from_tensorflow()
    assert "tensorflow" not in sys.modules




def test_sklearn_digits_ship_inside_the_package_with_labels():
    from sklearn import datasets

    source = data_sources.open_source("sklearn:digits", kind="data", data_dir="/nonexistent")
    digits = datasets.load_digits()
    assert len(source) == 1797 and source.fingerprint == "sklearn:digits/1797"
    first = source.records[0]
    assert first["image"].dtype == np.uint8 and first["image"].shape == (8, 8)
    # 0..16 grey levels scaled to 0..255: 16 is white, 0 black, order kept.
    assert np.array_equal(first["image"], np.rint(digits.images[0] * 255 / 16).astype(np.uint8))
    assert max(int(r["image"].max()) for r in source.records) == 255
    assert sorted({r["label"] for r in source.records}) == list(range(10))
    # Through the input pipeline: grey RGB at the stream's size, a pure function of (seed, index).
    stream = input_pipeline.ImageStream(source, seed=0, stream=0, image_size=16, crop_size=16)
    sample = stream.sample(5)
    assert sample.shape == (16, 16, 3) and np.array_equal(sample[..., 0], sample[..., 2])
    assert np.array_equal(sample, stream.sample(5))
    with pytest.raises(SetupError, match="no such packaged dataset"):
        data_sources.open_source("sklearn:iris", kind="data", data_dir="/nonexistent")
