"""The grid of generated samples written every ``config.sample_every`` steps of a StyleGAN run.

``count`` x ``count`` images of the EMA generator (what sampling uses), untruncated, of the seeds
``0 .. count**2 - 1`` with the library's seed conventions (`adain_jax.stylegan.pictures.samples`: z and
noise per seed), so grids of different steps and of different ablation rows show the same latents,
and seed s is the image ``adain-jax generate --seeds s`` writes: ``WORKDIR/samples/step_<step>.png``
and the ``samples`` image in TensorBoard. PNG, because the images are small and grey and JPEG would
blur the strokes.
"""

from __future__ import annotations

import pathlib

import numpy as np

from adain_jax import parallel
from adain_jax import stylegan as sg
from adain_jax.io import images as image_io
from adain_jax.io import sheets
from adain_jax.stylegan import pictures

SAMPLES_DIR = "samples"


class SampleGrid:
    def __init__(self, gcfg: sg.GeneratorConfig, *, count: int, cell: int):
        self.gcfg, self.count, self.cell = gcfg, int(count), int(cell)
        self.seeds = list(range(self.count ** 2))

    def images(self, ema_params, w_avg, psi: float = 1.0) -> np.ndarray:
        """The grid's ``count**2`` samples, (N, R, R, 3) float32 in [0, 1]."""
        return pictures.samples(ema_params, self.gcfg, self.seeds, w_avg=w_avg, psi=psi)

    def render(self, ema_params, w_avg, header: str, psi: float = 1.0) -> np.ndarray:
        images = self.images(ema_params, w_avg, psi)
        rows = [list(images[i:i + self.count]) for i in range(0, len(images), self.count)]
        return sheets.contact_sheet(rows, cell=self.cell, header=header)

    def write(self, ema_params, w_avg, path, header: str, psi: float = 1.0) -> tuple[pathlib.Path, np.ndarray]:
        grid = self.render(ema_params, w_avg, header, psi)
        image_io.save_image(pathlib.Path(path), grid)
        return pathlib.Path(path), grid

    def write_for_state(self, state, step: int, *, workdir) -> tuple[pathlib.Path, np.ndarray]:
        """The loop's sample writer: the grid of a `train.gan.GANState` at ``step``."""
        ema, w_avg = parallel.local_copy((state.g_ema, state.w_avg))
        path = pathlib.Path(workdir) / SAMPLES_DIR / f"step_{step:07d}.png"
        return self.write(ema, w_avg, path, header=f"step {step} (EMA generator, seeds 0-{self.count ** 2 - 1})")
