"""adain_jax.stylegan.averages: the generator EMA and the tracked average w."""

import jax.numpy as jnp
import numpy as np

from adain_jax import stylegan as sg


def test_ema_is_leafwise_decay_interpolation():
    old = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(4.0)}}
    new = {"a": jnp.array([3.0, 6.0]), "b": {"c": jnp.array(0.0)}}
    out = sg.ema(old, new, 0.75)
    np.testing.assert_allclose(out["a"], [1.5, 3.0])
    np.testing.assert_allclose(out["b"]["c"], 3.0)
    np.testing.assert_array_equal(sg.ema(old, new, 1.0)["a"], old["a"])
    np.testing.assert_array_equal(sg.ema(old, new, 0.0)["a"], new["a"])


def test_w_avg_tracks_the_mean_w():
    cfg = sg.GeneratorConfig(latent_dim=3)
    avg = sg.init_w_avg(cfg)
    np.testing.assert_array_equal(avg, np.zeros(3))
    rng = np.random.default_rng(0)
    for _ in range(300):
        w = rng.standard_normal((64, 3)) * 0.1 + np.array([1.0, -2.0, 0.5])
        avg = sg.update_w_avg(avg, jnp.asarray(w, jnp.float32), 0.95)
    np.testing.assert_allclose(avg, [1.0, -2.0, 0.5], atol=0.02)
    # Per-layer ws (N, L, D) are averaged over images and layers alike.
    ws = jnp.broadcast_to(jnp.array([2.0, 0.0, 1.0]), (4, 6, 3))
    np.testing.assert_allclose(sg.update_w_avg(jnp.zeros(3), ws, 0.5), [1.0, 0.0, 0.5])
