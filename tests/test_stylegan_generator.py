"""adain_jax.stylegan.generator: init, and `generate` with mixing and truncation as the pure latents."""

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax import stylegan as sg

TINY = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, mapping_layers=2)
L = 4
TOL = dict(rtol=1e-5, atol=1e-5)


def _noisy_generator(seed=0):
    g = sg.init_generator(TINY, seed)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.3 if "noise_strength" in jax.tree_util.keystr(p) else x, g)


def _z(seed, n=3):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, 16)), jnp.float32)


def test_init_is_seeded_float32_numpy():
    a, b, c = sg.init_generator(TINY, 1), sg.init_generator(TINY, 1), sg.init_generator(TINY, 2)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(a))
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))
    assert not np.array_equal(a["mapping"]["fc0"]["w"], c["mapping"]["fc0"]["w"])
    # Switching the mapping network off leaves the synthesis initialisation alone.
    no_map = sg.init_generator(sg.GeneratorConfig(**{**TINY.__dict__, "use_mapping": False}), 1)
    np.testing.assert_array_equal(no_map["synthesis"]["layer1"]["conv"]["w"], a["synthesis"]["layer1"]["conv"]["w"])


def test_mixing_at_the_ends_gives_the_pure_latents_images():
    g, key = _noisy_generator(), jax.random.key(7)
    z1, z2 = _z(1), _z(2)
    pure1 = np.asarray(sg.generate(g, TINY, z1, key))
    pure2 = np.asarray(sg.generate(g, TINY, z2, key))
    np.testing.assert_allclose(sg.generate(g, TINY, z1, key, mix_z=z2, crossover=0), pure2, **TOL)
    np.testing.assert_allclose(sg.generate(g, TINY, z1, key, mix_z=z2, crossover=L), pure1, **TOL)
    middle = np.asarray(sg.generate(g, TINY, z1, key, mix_z=z2, crossover=2))
    assert np.max(np.abs(middle - pure1)) > 1e-3 and np.max(np.abs(middle - pure2)) > 1e-3


def test_truncation_psi_one_is_identity_and_psi_zero_is_the_average_image():
    g, key = _noisy_generator(), jax.random.key(3)
    z = _z(4)
    w_avg = jnp.asarray(np.random.default_rng(5).standard_normal(16), jnp.float32)
    plain = np.asarray(sg.generate(g, TINY, z, key))
    np.testing.assert_allclose(sg.generate(g, TINY, z, key, w_avg=w_avg, psi=1.0, cutoff=L), plain, **TOL)
    average = np.asarray(sg.synthesis(g, TINY, jnp.broadcast_to(w_avg, (3, L, 16)), key))
    np.testing.assert_allclose(sg.generate(g, TINY, z, key, w_avg=w_avg, psi=0.0, cutoff=L), average, **TOL)


def test_crossover_psi_and_cutoff_do_not_recompile():
    g, key = _noisy_generator(), jax.random.key(0)
    z1, z2 = _z(1), _z(2)
    w_avg = jnp.zeros((16,), jnp.float32)
    sg.generate(g, TINY, z1, key, w_avg=w_avg, psi=1.0, cutoff=L, mix_z=z2, crossover=0)
    before = sg.generate._cache_size()
    for k, psi, cutoff in [(1, 0.5, 2), (L, 0.0, 0), (2, -1.0, 3), (3, 0.7, L)]:
        sg.generate(g, TINY, z1, key, w_avg=w_avg, psi=psi, cutoff=cutoff, mix_z=z2, crossover=k)
    sg.generate(g, TINY, z1, key, w_avg=w_avg, psi=0.9, cutoff=1, mix_z=z2, crossover=jnp.array([0, 2, 4]))
    assert sg.generate._cache_size() == before + 1  # only the per-image crossover's new shape


def test_same_seeds_same_images():
    key = jax.random.key(11)
    a = np.asarray(sg.generate(_noisy_generator(0), TINY, _z(9), key))
    b = np.asarray(sg.generate(_noisy_generator(0), TINY, _z(9), key))
    c = np.asarray(sg.generate(_noisy_generator(0), TINY, _z(9), jax.random.key(12)))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3


def test_gradients_reach_every_parameter():
    g = _noisy_generator()
    loss = jax.jit(jax.grad(lambda p: jnp.mean(sg.generate(p, TINY, _z(1), jax.random.key(0)) ** 2)))
    grads = loss(g)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        leaf = np.asarray(leaf)
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), jax.tree_util.keystr(path)
