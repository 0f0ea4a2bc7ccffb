"""adain_jax.stylegan.styles: mixing and truncation select layers by mask, and never recompile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import stylegan as sg

L, D = 6, 5


@pytest.fixture
def ws():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.standard_normal((3, L, D)), jnp.float32),
            jnp.asarray(rng.standard_normal((3, L, D)), jnp.float32),
            jnp.asarray(rng.standard_normal(D), jnp.float32))


def test_broadcast_w_repeats_w_on_every_layer():
    cfg = sg.GeneratorConfig(latent_dim=D)
    w = jnp.arange(2 * D, dtype=jnp.float32).reshape(2, D)
    out = np.asarray(sg.broadcast_w(w, cfg))
    assert out.shape == (2, L, D)
    np.testing.assert_array_equal(out, np.repeat(np.asarray(w)[:, None], L, axis=1))


def test_mix_takes_layers_below_the_crossover_from_the_first(ws):
    a, b, _ = ws
    np.testing.assert_array_equal(sg.mix(a, b, 0), b)
    np.testing.assert_array_equal(sg.mix(a, b, L), a)
    out = np.asarray(sg.mix(a, b, 2))
    np.testing.assert_array_equal(out[:, :2], a[:, :2])
    np.testing.assert_array_equal(out[:, 2:], b[:, 2:])
    per_image = np.asarray(sg.mix(a, b, jnp.array([0, 3, L])))
    np.testing.assert_array_equal(per_image[0], b[0])
    np.testing.assert_array_equal(per_image[1], np.concatenate([a[1, :3], b[1, 3:]]))
    np.testing.assert_array_equal(per_image[2], a[2])


def test_truncate_psi_one_is_identity_and_psi_zero_is_the_average(ws):
    a, _, avg = ws
    np.testing.assert_array_equal(sg.truncate(a, avg, 1.0, L), a)
    np.testing.assert_array_equal(sg.truncate(a, avg, 0.0, L), np.broadcast_to(avg, a.shape))
    half = np.asarray(sg.truncate(a, avg, 0.5, 4))
    want = np.asarray(avg, np.float64) + 0.5 * (np.asarray(a, np.float64) - np.asarray(avg, np.float64))
    np.testing.assert_allclose(half[:, :4], want[:, :4], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(half[:, 4:], a[:, 4:])
    np.testing.assert_array_equal(sg.truncate(a, avg, 0.0, 0), a)


def test_new_crossover_psi_or_cutoff_do_not_recompile(ws):
    a, b, avg = ws
    mix, truncate = jax.jit(sg.mix), jax.jit(sg.truncate)
    for k in range(L + 1):
        mix(a, b, k)
    for psi, cutoff in [(1.0, L), (0.7, 3), (0.0, 0), (-1.0, 2)]:
        truncate(a, avg, psi, cutoff)
    assert mix._cache_size() == 1 and truncate._cache_size() == 1
