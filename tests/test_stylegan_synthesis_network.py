"""adain_jax.stylegan.synthesis_network: shapes, parameter counts, the AdaIN styles and the noise inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import stylegan as sg
from adain_jax.stylegan.synthesis_network import draw_noise, layer_resolution

TINY = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, mapping_layers=2)


def count(tree):
    return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def _default_synthesis_count(*, const=True, styles=True, noise=True):
    # Derived from the architecture, not the code: 16 px, latent 64, features 128 (4x4), 64 (8x8), 32 (16x16).
    d = 64
    total = 16 * 128 if const else d * 16 * 128 + 16 * 128             # constant, or dense "traditional input"
    layers = [(None, 128), (128, 128), (128, 64), (64, 64), (64, 32), (32, 32)]  # (c_in of the 3x3 conv, c)
    for c_in, c in layers:
        total += 0 if c_in is None else 9 * c_in * c    # conv, no bias (the epilogue's bias follows the noise)
        total += c                                      # bias
        total += c if noise else 0                      # per-channel noise strength
        total += (d * 2 * c + 2 * c) if styles else 0   # style affine -> (y_s, y_b)
    return total + 32 * 1 + 1                           # toRGB 1x1 to one channel


def test_default_parameter_counts():
    mapping = 8 * (64 * 64 + 64)
    g = sg.init_generator(sg.GeneratorConfig(), 0)
    assert count(g["mapping"]) == mapping == 33_280
    assert count(g["synthesis"]) == _default_synthesis_count() == 346_913
    assert count(g) == 380_193
    assert count(sg.init_generator(sg.GeneratorConfig(use_noise=False), 0)["synthesis"]) == \
        _default_synthesis_count(noise=False)
    row_b = sg.GeneratorConfig(use_styles=False, const_input=False, use_mapping=False, mapping_layers=0)
    assert count(sg.init_generator(row_b, 0)) == _default_synthesis_count(const=False, styles=False)


@pytest.mark.parametrize("resolution, channels", [(8, 1), (16, 3)])
def test_output_shape_and_dtype(resolution, channels):
    cfg = sg.GeneratorConfig(resolution=resolution, channels=channels, latent_dim=16, max_features=16,
                             min_features=8, mapping_layers=1)
    g = sg.init_generator(cfg, 0)
    ws = jnp.zeros((3, sg.num_style_layers(cfg), 16)) + 0.1
    out = sg.synthesis(g, cfg, ws, jax.random.key(0))
    assert out.shape == (3, resolution, resolution, channels) and out.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(out)))
    with pytest.raises(ValueError, match="ws must be"):
        sg.synthesis(g, cfg, ws[:, :2], jax.random.key(0))


def test_style_adain_is_instance_norm_then_learned_scale_and_bias():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 4, 3)) * 5 + 2
    y_s, y_b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    got = np.asarray(sg.style_adain(*(jnp.asarray(a, jnp.float32) for a in (x, y_s, y_b))))
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt(x.var(axis=(1, 2), ddof=1, keepdims=True) + 1e-5)  # the port's moments (see the docstring)
    want = (x - mean) / std * y_s[:, None, None] + y_b[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_styles_start_as_unit_scale_and_zero_bias():
    g = sg.init_generator(TINY, 0)
    style = g["synthesis"]["layer1"]["style"]
    c = style["b"].shape[0] // 2
    np.testing.assert_array_equal(np.asarray(style["b"]), np.r_[np.ones(c), np.zeros(c)])


def test_each_layer_style_changes_the_image():
    g = sg.init_generator(TINY, 0)
    ws = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 16)), jnp.float32)
    base = np.asarray(sg.synthesis(g, TINY, ws, jax.random.key(0)))
    for layer in range(4):
        other = np.asarray(sg.synthesis(g, TINY, ws.at[:, layer].add(1.0), jax.random.key(0)))
        assert np.max(np.abs(other - base)) > 1e-3, layer


def _with_noise_strength(g, value):
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.full_like(x, value) if "noise_strength" in jax.tree_util.keystr(p) else x, g)


def test_noise_enters_through_the_learned_strength_only():
    g = sg.init_generator(TINY, 0)  # strengths start at zero, as StyleGAN
    ws = jnp.ones((2, 4, 16))
    a, b = (np.asarray(sg.synthesis(g, TINY, ws, jax.random.key(k))) for k in (0, 1))
    np.testing.assert_array_equal(a, b)
    g = _with_noise_strength(g, 0.5)
    a, b = (np.asarray(sg.synthesis(g, TINY, ws, jax.random.key(k))) for k in (0, 1))
    assert np.max(np.abs(a - b)) > 1e-2
    cfg = sg.GeneratorConfig(**{**TINY.__dict__, "use_noise": False})
    g = sg.init_generator(cfg, 0)
    assert "noise_strength" not in g["synthesis"]["layer0"]
    np.testing.assert_array_equal(*(np.asarray(sg.synthesis(g, cfg, ws, jax.random.key(k))) for k in (0, 1)))


def test_per_image_noise_keys_make_images_independent_of_the_batch():
    g = _with_noise_strength(sg.init_generator(TINY, 0), 0.5)
    ws = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4, 16)), jnp.float32)
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    together = np.asarray(sg.synthesis(g, TINY, ws, keys))
    alone = np.asarray(sg.synthesis(g, TINY, ws[2:], keys[2:]))
    np.testing.assert_allclose(together[2:], alone, atol=1e-5)
    noise = draw_noise(TINY, keys, 3)
    assert [n.shape for n in noise] == [(3, layer_resolution(l), layer_resolution(l), 1) for l in range(4)]


def test_traditional_input_and_no_styles_reads_w_through_the_input_layer():
    cfg = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, use_mapping=False,
                             mapping_layers=0, use_styles=False, const_input=False)
    g = sg.init_generator(cfg, 0)
    assert "style" not in g["synthesis"]["layer0"] and "dense" in g["synthesis"]["input"]
    ws = jnp.asarray(np.random.default_rng(3).standard_normal((2, 4, 16)), jnp.float32)
    a = np.asarray(sg.synthesis(g, cfg, ws, jax.random.key(0)))
    b = np.asarray(sg.synthesis(g, cfg, ws.at[:, 0].multiply(-1), jax.random.key(0)))
    assert np.max(np.abs(a - b)) > 1e-3
    # Only layer 0's w feeds the input layer; with no styles the other layers' ws are unused.
    c = np.asarray(sg.synthesis(g, cfg, ws.at[:, 1:].set(0.0), jax.random.key(0)))
    np.testing.assert_array_equal(a, c)
