"""The grid of sample stylizations written every ``config.sample_every`` steps.

A fixed set of content images (rows) and style images (columns) - the first decodable records of
each dataset, or the first images of the folders ``config.sample_content`` / ``config.sample_style``
(held-out pairs, which show what a decoder does on images it never trained on), shorter side resized
to ``config.sample_size`` and centre-cropped - stylized with the current decoder: ``WORKDIR/samples/step_<step>.jpg`` and the ``samples`` image in TensorBoard. The
first row shows the styles, the first column the contents. The grid is drawn with the run's decoder
variant (``variant``), which the train state's ``{"encoder", "decoder"}`` arrays do not carry.
"""

from __future__ import annotations

import pathlib

import numpy as np

import adain_jax
from adain_jax.io import images as image_io
from adain_jax.io import sheets
from adain_jax.model import variants
from train import input_pipeline
from train.errors import SetupError

SAMPLES_DIR = "samples"


def grid_images(source: input_pipeline.ImageStream | str | pathlib.Path, count: int, size: int) -> np.ndarray:
    """``count`` images of a training stream or of a folder (the first by name), float32 in [0, 1]."""
    if isinstance(source, input_pipeline.ImageStream):
        return input_pipeline.fixed_images(source, count, size).astype(np.float32) / np.float32(255)
    try:
        paths = image_io.list_images(source)[:count]  # raises for a folder without images
        return np.stack([image_io.load_image(p, size, crop=True) for p in paths])
    except image_io.FileError as e:
        raise SetupError(" ".join(str(e).split())) from None


class SampleGrid:
    def __init__(self, content: input_pipeline.ImageStream | str | pathlib.Path,
                 style: input_pipeline.ImageStream | str | pathlib.Path, *,
                 count: int, size: int, variant: variants.DecoderVariant | None = None):
        self.contents = grid_images(content, count, size)
        self.styles = grid_images(style, count, size)
        self.size = size
        self.variant = variant

    def render(self, weights, step: int) -> np.ndarray:
        """The grid (HxWx3 float in [0, 1]) for ``weights`` = ``{"encoder", "decoder"}`` on one device
        (with the grid's variant unless ``weights`` records its own)."""
        if self.variant is not None and "variant" not in weights:
            weights = variants.attach(weights, self.variant)
        num_styles = len(self.styles)
        rows = [[None, *self.styles]]
        for content in self.contents:
            batch = np.broadcast_to(content, (num_styles, *content.shape))
            out = np.asarray(adain_jax.stylize(weights, batch, self.styles))
            rows.append([content, *out])
        return sheets.contact_sheet(rows, cell=self.size, header=f"step {step}")

    def write(self, weights, step: int, workdir) -> tuple[pathlib.Path, np.ndarray]:
        grid = self.render(weights, step)
        path = pathlib.Path(workdir) / SAMPLES_DIR / f"step_{step:07d}.jpg"
        image_io.save_image(path, grid)
        return path, grid
