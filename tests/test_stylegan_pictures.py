"""adain_jax.stylegan.pictures: seeds, style bands, the mixing grid, truncation sweep and noise study."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import stylegan as sg
from adain_jax.stylegan import pictures

TINY = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, mapping_layers=2)


@pytest.fixture(scope="module")
def generator():
    g = sg.init_generator(TINY, 0)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.3 if "noise_strength" in jax.tree_util.keystr(p) else x, g)


def test_seed_latents_follow_numpy_randomstate():
    z = pictures.seed_latents(TINY, [5, 7])
    np.testing.assert_array_equal(z[1], np.random.RandomState(7).randn(16).astype(np.float32))


def test_samples_depend_on_the_seed_only(generator):
    alone = pictures.samples(generator, TINY, [3])
    batch = pictures.samples(generator, TINY, [1, 2, 3])
    np.testing.assert_allclose(batch[2], alone[0], atol=1e-5)
    assert batch.shape == (3, 8, 8, 3) and batch.min() >= 0 and batch.max() <= 1
    assert np.max(np.abs(batch[0] - batch[1])) > 1e-3
    # More seeds than one chunk: the padded last chunk changes nothing.
    many = pictures.samples(generator, TINY, list(range(pictures.BATCH + 2)))
    np.testing.assert_allclose(many[3], batch[2], atol=1e-5)


@pytest.mark.parametrize("resolution, bands", [
    (8, {"coarse": (0, 2), "middle": (2, 3), "fine": (3, 4)}),
    (16, {"coarse": (0, 2), "middle": (2, 4), "fine": (4, 6)}),
    (32, {"coarse": (0, 4), "middle": (4, 6), "fine": (6, 8)}),
    (1024, {"coarse": (0, 4), "middle": (4, 8), "fine": (8, 18)}),  # the paper: 4-8, 16-32, 64-1024 px
])
def test_style_bands(resolution, bands):
    assert pictures.style_bands(sg.GeneratorConfig(resolution=resolution)) == bands


def test_copy_styles_takes_only_the_band_from_b():
    a, b = jnp.zeros((2, 6, 3)), jnp.ones((2, 6, 3))
    out = np.asarray(pictures.copy_styles(a, b, 2, 4))
    np.testing.assert_array_equal(out[:, :, 0], [[0, 0, 1, 1, 0, 0]] * 2)


def test_sheets(generator):
    grid = pictures.mixing_grid(generator, TINY, [0, 1], [5, 6, 7], cell=16)
    sweep = pictures.truncation_sweep(generator, TINY, [0, 1], jnp.zeros(16), cell=16)
    noise = pictures.noise_study(generator, TINY, [0], draws=2, std_draws=8, cell=16)
    for sheet in (grid, sweep, noise):
        assert sheet.ndim == 3 and sheet.shape[2] == 3 and sheet.dtype == np.float32
    # 1 + 3 bands x 2 rows of 4 cells, 7 rows of cells; 4 columns (grid), 6 psi columns, 2 draws + std.
    gap = 4
    assert grid.shape[1] == 4 * 16 + 5 * gap and sweep.shape[1] == 6 * 16 + 7 * gap
    assert noise.shape[1] == 3 * 16 + 4 * gap


def test_truncation_sweep_psi_zero_column_is_the_average_image():
    cfg = sg.GeneratorConfig(**{**TINY.__dict__, "use_noise": False})
    g = sg.init_generator(cfg, 0)
    w_avg = jnp.asarray(np.random.default_rng(0).standard_normal(16), jnp.float32)
    zero = pictures.samples(g, cfg, [0, 1, 2], w_avg=w_avg, psi=0.0)
    np.testing.assert_allclose(zero[0], zero[2], atol=1e-5)
    full = pictures.samples(g, cfg, [0, 1, 2], w_avg=w_avg, psi=1.0)
    np.testing.assert_allclose(full, pictures.samples(g, cfg, [0, 1, 2]), atol=1e-6)
