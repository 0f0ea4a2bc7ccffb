"""adain_jax.stylegan.checkpoint: the generator item + meta config round trip, and clear errors."""

import shutil

import jax
import numpy as np
import pytest

from adain_jax import stylegan as sg
from adain_jax.io import weights as weights_lib
from adain_jax.stylegan.checkpoint import GENERATOR_ITEM

TINY = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, mapping_layers=2,
                          use_noise=False)


def _same(a, b):
    return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b))


def test_round_trip_latest_and_chosen_step(tmp_path):
    g1, g2 = sg.init_generator(TINY, 1), sg.init_generator(TINY, 2)
    sg.save_generator(tmp_path, 10, g1, TINY, np.full(16, 0.5, np.float32), meta={"data_position": 320})
    sg.save_generator(tmp_path, 20, g2, TINY, np.full(16, 2.0, np.float32))
    assert sg.generator_steps(tmp_path) == [10, 20]
    params, cfg, w_avg = sg.load_generator(tmp_path)
    assert cfg == TINY and _same(params, g2)
    np.testing.assert_array_equal(w_avg, np.full(16, 2.0))
    params, _, w_avg = sg.load_generator(tmp_path, step=10)
    assert _same(params, g1) and float(w_avg[0]) == 0.5
    with pytest.raises(FileNotFoundError, match="no such generator checkpoint"):
        sg.load_generator(tmp_path, step=15)


def test_not_a_stylegan_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such workdir"):
        sg.load_generator(tmp_path / "missing")
    (tmp_path / weights_lib.CHECKPOINTS / "5" / weights_lib.WEIGHTS_ITEM).mkdir(parents=True)  # a decoder run
    with pytest.raises(FileNotFoundError, match="not a StyleGAN training workdir"):
        sg.load_generator(tmp_path)


def test_damaged_items_are_named(tmp_path):
    sg.save_generator(tmp_path, 3, sg.init_generator(TINY, 0), TINY, np.zeros(16, np.float32))
    step_dir = weights_lib.checkpoint_dir(tmp_path, 3)
    shutil.rmtree(step_dir / GENERATOR_ITEM)
    (step_dir / GENERATOR_ITEM).mkdir()
    with pytest.raises(ValueError, match=r"3/generator: not a readable generator"):
        sg.load_generator(tmp_path)
    shutil.rmtree(step_dir / weights_lib.META_ITEM)
    with pytest.raises(ValueError, match=r"3/meta: unreadable checkpoint meta"):
        sg.load_generator(tmp_path)
