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
