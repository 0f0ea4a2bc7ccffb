"""adain_jax.stylegan.mapping_network: z -> w against a float64 numpy reimplementation of StyleGAN's f."""

import math

import jax.numpy as jnp
import numpy as np

from adain_jax import stylegan as sg
from adain_jax.stylegan.mapping_network import init_mapping

CFG = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, mapping_layers=3)


def _reference(params, cfg, z):
    x = z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-8)
    for i in range(cfg.mapping_layers):
        p = params[f"fc{i}"]
        w = np.asarray(p["w"], np.float64) * math.sqrt(2) / math.sqrt(cfg.latent_dim) * cfg.mapping_lr_mul
        x = x @ w + np.asarray(p["b"], np.float64) * cfg.mapping_lr_mul
        x = np.where(x >= 0, x, 0.2 * x)
    return x


def test_mapping_matches_pixel_norm_then_lr_scaled_dense_layers():
    g = sg.init_generator(CFG, 0)
    # Non-zero biases, so the bias's lr multiplier is exercised too.
    g["mapping"] = {k: {"w": v["w"], "b": jnp.full_like(v["b"], 5.0)} for k, v in g["mapping"].items()}
    z = np.random.default_rng(0).standard_normal((4, 16)) * 3
    got = np.asarray(sg.mapping(g, CFG, jnp.asarray(z, jnp.float32)))
    np.testing.assert_allclose(got, _reference(g["mapping"], CFG, z), rtol=1e-4, atol=1e-5)
    assert got.shape == (4, 16) and got.dtype == np.float32


def test_mapping_layers_and_stored_scale():
    params = init_mapping(np.random.default_rng(0), CFG)
    assert sorted(params) == ["fc0", "fc1", "fc2"]
    # Stored N(0, 1) / lr_mul: the learning-rate multiplier of 0.01 shows as a std of 100.
    assert 80 < np.std(params["fc0"]["w"]) < 120


def test_without_mapping_w_is_the_pixel_normalised_z():
    cfg = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, use_mapping=False,
                             mapping_layers=0)
    g = sg.init_generator(cfg, 0)
    assert "mapping" not in g
    z = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    w = np.asarray(sg.mapping(g, cfg, jnp.asarray(z)))
    np.testing.assert_allclose(w, z / np.sqrt(np.mean(z.astype(np.float64) ** 2, axis=1, keepdims=True)), rtol=1e-5)
