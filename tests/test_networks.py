"""Encoder/decoder building blocks against plain-numpy definitions of the PyTorch port's layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax.model import architecture, modules, networks


def numpy_ceil_pool(x):
    """PyTorch MaxPool2d(2, 2, ceil_mode=True) on NHWC, written out window by window."""
    n, h, w, c = x.shape
    oh, ow = -(-h // 2), -(-w // 2)
    out = np.empty((n, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("h,w", [(6, 8), (7, 5), (1, 3)])
def test_max_pool_ceil_matches_windowed_max(h, w):
    x = np.random.default_rng(0).normal(size=(2, h, w, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(networks.max_pool_ceil(jnp.asarray(x))), numpy_ceil_pool(x))


def test_upsample_nearest_repeats_each_pixel_in_a_2x2_block():
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    expected = x.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(np.asarray(networks.upsample_nearest_2x(jnp.asarray(x))), expected)


def test_conv_layer_equals_reflection_pad_then_valid_correlation():
    spec = architecture.ConvSpec("c", 0, 3, 4)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    bias = rng.normal(size=(4,)).astype(np.float32)
    y = networks.conv_layer({"kernel": kernel, "bias": bias}, jnp.asarray(x), spec)
    # The expected values in float64, so the tolerance bounds the float32 rounding of 27 products.
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect").astype(np.float64)
    expected = np.zeros((1, 5, 6, 4), np.float64)
    for i in range(5):
        for j in range(6):
            expected[:, i, j] = np.einsum("nhwc,hwco->no", xp[:, i:i + 3, j:j + 3], kernel.astype(np.float64))
    np.testing.assert_allclose(np.asarray(y), np.maximum(expected + bias, 0), rtol=1e-5, atol=1e-5)


def test_init_weights_has_the_architecture_shapes(random_weights):
    for net, specs in (("encoder", architecture.ENCODER), ("decoder", architecture.DECODER)):
        assert sorted(random_weights[net]) == sorted(s.name for s in specs)
        for s in specs:
            assert random_weights[net][s.name]["kernel"].shape == s.flax_kernel_shape
            assert random_weights[net][s.name]["bias"].shape == (s.out_channels,)


@pytest.mark.parametrize("h,w", [(32, 40), (29, 45)])
def test_encoder_feature_shapes_round_up_like_ceil_mode_pooling(random_weights, h, w):
    feats = networks.encode(random_weights["encoder"], jnp.zeros((1, h, w, 3)))
    assert list(feats) == list(architecture.FEATURE_LAYERS)
    expected_channels = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}
    for i, (name, f) in enumerate(feats.items()):
        size = (h, w)
        for _ in range(i):
            size = tuple(-(-s // 2) for s in size)
        assert f.shape == (1, *size, expected_channels[name])
    out = networks.decode(random_weights["decoder"], feats["relu4_1"])
    assert out.shape == (1, -(-h // 8) * 8, -(-w // 8) * 8, 3)


def test_encoder_is_relu_activated_and_decoder_is_not(random_weights):
    x = jax.random.uniform(jax.random.key(1), (1, 24, 24, 3))
    feats = networks.encode(random_weights["encoder"], x)
    assert all(float(f.min()) >= 0.0 for f in feats.values())
    decoder = dict(random_weights["decoder"])
    decoder["conv1_1"] = {**decoder["conv1_1"], "bias": decoder["conv1_1"]["bias"] - 2.0}
    out = networks.decode(decoder, feats["relu4_1"])
    assert float(out.max()) < 0.0  # no output activation (a ReLU or sigmoid could not go negative)


def test_init_weights_has_the_structure_flax_init_would_give():
    flax_params = jax.eval_shape(lambda: modules.Encoder().init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))["params"]
    ours = networks.init_weights(0)["encoder"]
    assert jax.tree.structure(dict(flax_params)) == jax.tree.structure(ours)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(dict(flax_params)), jax.tree.leaves(ours)))
    # seeded: same key, same weights; another key, other weights
    a, b, c = (networks.init_weights(jax.random.key(k))["decoder"]["conv3_1"]["kernel"] for k in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_flax_modules_compute_exactly_the_pure_functions(random_weights):
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(1, 19, 23, 3)).astype(np.float32))
    feats = modules.Encoder().apply({"params": random_weights["encoder"]}, x)
    expected = networks.encode(random_weights["encoder"], x)
    assert sorted(feats) == sorted(expected) == sorted(architecture.FEATURE_LAYERS)
    for name in feats:
        np.testing.assert_array_equal(np.asarray(feats[name]), np.asarray(expected[name]))
    out = modules.Decoder().apply({"params": random_weights["decoder"]}, expected["relu4_1"])
    np.testing.assert_array_equal(np.asarray(out), np.asarray(networks.decode(random_weights["decoder"], expected["relu4_1"])))
    assert out.shape == (1, 24, 24, 3)


def test_flax_decoder_of_a_concat_variant_declares_its_shapes_and_computes_decode():
    from adain_jax.model import variants

    variant = variants.DecoderVariant("concat", "content")
    feats = {"relu4_1": jnp.zeros((1, 2, 3, 512)), "relu3_1": jnp.zeros((1, 4, 6, 256)),
             "relu2_1": jnp.zeros((1, 8, 12, 128)), "relu1_1": jnp.zeros((1, 16, 24, 64))}
    module = modules.Decoder(variant=variant)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), feats["relu4_1"], feats))["params"]
    ours = networks.init_weights(0, variant)
    assert jax.tree.structure(dict(shapes)) == jax.tree.structure(ours["decoder"])
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(dict(shapes)), jax.tree.leaves(ours["decoder"])))
    assert shapes["conv2_2"]["kernel"].shape == (3, 3, 128, 64) and shapes["conv2_1"]["kernel"].shape == (3, 3, 128, 64)
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(1, 16, 24, 3)).astype(np.float32))
    feats = networks.encode(ours["encoder"], x)
    skips = variants.skip_features(variant, feats)
    out = module.apply({"params": ours["decoder"]}, feats["relu4_1"], skips)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(
        networks.decode(ours["decoder"], feats["relu4_1"], variant=variant, skips=skips)))
