"""train.samples: the grid of sample stylizations (contents x styles)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from train import data_sources, input_pipeline, samples
from training_helpers import make_image_folder, official_random_weights


def test_grid_has_a_cell_per_content_style_pair_and_is_written(tmp_path):
    data_dir = tmp_path / "tfds"
    streams = [input_pipeline.ImageStream(
        data_sources.open_source(str(make_image_folder(tmp_path / kind, n, seed=n)), kind=kind, data_dir=data_dir),
        seed=0, stream=i, image_size=16, crop_size=16) for i, (kind, n) in enumerate((("content", 2), ("style", 3)))]
    grid = samples.SampleGrid(*streams, count=3, size=16)
    assert grid.contents.shape == (2, 16, 16, 3) and grid.styles.shape == (3, 16, 16, 3)
    path, image = grid.write(official_random_weights(0), 7, tmp_path / "w")
    assert path == tmp_path / "w" / "samples" / "step_0000007.jpg"
    assert Image.open(path).size == (image.shape[1], image.shape[0])
    # 4 columns (content + 3 styles) and 3 rows (styles + 2 contents) of 16 px cells, plus gaps and text.
    assert image.shape[1] >= 4 * 16 and image.shape[0] >= 3 * 16
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0


def test_grid_can_show_folders_of_held_out_images(tmp_path):
    from helpers import write_image

    for i in range(3):
        write_image(tmp_path / "c" / f"c{i}.png", 20, 24 + i, seed=i)
        write_image(tmp_path / "s" / f"s{i}.jpg", 30, 18, seed=10 + i)
    grid = samples.SampleGrid(str(tmp_path / "c"), tmp_path / "s", count=2, size=16)
    assert grid.contents.shape == (2, 16, 16, 3) and grid.styles.shape == (2, 16, 16, 3)
    # The first images by name, centre-cropped: c0.png is 20x24, so its crop is its middle 16 columns.
    from adain_jax.io import images as image_io

    np.testing.assert_array_equal(grid.contents[0], image_io.load_image(tmp_path / "c" / "c0.png", 16, crop=True))
    path, _ = grid.write(official_random_weights(0), 3, tmp_path / "w")
    assert path.is_file()


def test_grid_folder_errors_are_one_line(tmp_path):
    import pytest

    from train.errors import SetupError

    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match="empty: no image files"):
        samples.SampleGrid(str(tmp_path / "empty"), str(tmp_path / "empty"), count=2, size=16)
    with pytest.raises(SetupError, match="absent"):
        samples.SampleGrid(str(tmp_path / "absent"), str(tmp_path / "empty"), count=2, size=16)
