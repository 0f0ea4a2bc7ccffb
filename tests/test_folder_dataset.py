"""train.folder_dataset: a folder of images -> an array_record TFDS dataset, without TensorFlow."""

from __future__ import annotations

import sys

import pytest

from helpers import write_image
from train import folder_dataset
from train.errors import SetupError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "art"
    write_image(root / "impressionism" / "a.jpg", 40, 48, seed=1)
    write_image(root / "impressionism" / "b.png", 36, 30, seed=2)
    write_image(root / "cubism" / "deep" / "c.JPG", 50, 40, seed=3)
    (root / "cubism" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("not an image suffix")
    write_image(root / ".hidden" / "d.jpg", 40, 40, seed=4)  # hidden folder: skipped
    write_image(root / "._e.jpg", 40, 40, seed=5)  # macOS metadata file: skipped
    return root


def test_lists_images_recursively_sorted_and_skips_hidden(folder):
    files = folder_dataset.list_image_files(folder)
    rel = [p.relative_to(folder).as_posix() for p in files]
    assert rel == ["cubism/broken.jpg", "cubism/deep/c.JPG", "impressionism/a.jpg", "impressionism/b.png"]


def test_builds_array_record_with_encoded_bytes_and_reuses_it(folder, tmp_path):
    import tensorflow_datasets as tfds

    data_dir = tmp_path / "tfds"
    builder = folder_dataset.prepare(folder, data_dir)
    assert builder.info.file_format.value == "array_record"
    assert builder.info.splits["train"].num_examples == 4
    source = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    records = {r["file_name"].decode(): r["image"] for r in (source[i] for i in range(len(source)))}
    for rel, data in records.items():
        assert data == (folder / rel).read_bytes()  # stored unchanged, the corrupt file too
    # Prepared once: a second call finds it (no new files are written).
    mtimes = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}
    again = folder_dataset.prepare(folder, data_dir)
    assert again.data_dir == builder.data_dir
    assert {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()} == mtimes
    # It is an ordinary TFDS dataset on disk.
    assert len(tfds.builder_from_directory(builder.data_dir).as_data_source("train")) == 4
    assert "tensorflow" not in sys.modules


def test_changed_folder_gets_a_new_dataset(folder, tmp_path):
    first = folder_dataset.prepare(folder, tmp_path / "tfds")
    write_image(folder / "new.jpg", 40, 40, seed=9)
    second = folder_dataset.prepare(folder, tmp_path / "tfds")
    assert first.builder_config.name != second.builder_config.name
    assert second.info.splits["train"].num_examples == 5
    assert first.builder_config.name.startswith("art-")


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no_images"])
def test_bad_folders_raise_one_line_naming_the_path(tmp_path, case):
    path = tmp_path / case
    if case == "file":
        path.write_text("x")
    elif case == "empty":
        path.mkdir()
    elif case == "no_images":
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "readme.txt").write_text("x")
    with pytest.raises(SetupError) as err:
        folder_dataset.prepare(path, tmp_path / "tfds")
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("*.array_record*"))
