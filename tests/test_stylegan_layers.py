"""adain_jax.stylegan.layers against float64 numpy: equalised lr, blur, bilinear resampling, pixel norm."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax.stylegan import layers


def test_dense_scales_stored_weights_at_run_time():
    rng = np.random.default_rng(0)
    p = layers.init_dense(rng, 256, 64, lr_mul=0.01, bias_init=0.5)
    # Stored N(0, 1) / lr_mul; the effective bias is bias_init.
    assert abs(np.std(p["w"]) - 100.0) < 3.0
    x = np.random.default_rng(1).standard_normal((5, 256))
    got = np.asarray(layers.dense(p, jnp.asarray(x, jnp.float32), gain=2.0, lr_mul=0.01))
    want = x @ (p["w"].astype(np.float64) * 2.0 / 16.0 * 0.01) + 0.5
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _conv_reference(x, w, b):
    """Same-padded conv in float64 loops (HWIO kernel, NHWC input)."""
    k = w.shape[0]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (w.shape[3],))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[:, i, j] = np.einsum("nhwc,hwco->no", xp[:, i:i + k, j:j + k], w)
    return out + b


def test_conv_is_a_same_padded_he_scaled_convolution():
    rng = np.random.default_rng(2)
    p = layers.init_conv(rng, 3, 4, 5)
    p["b"] = rng.standard_normal(5).astype(np.float32)
    x = rng.standard_normal((2, 6, 7, 4)).astype(np.float32)
    got = np.asarray(layers.conv(p, jnp.asarray(x)))
    want = _conv_reference(x.astype(np.float64), p["w"] * math.sqrt(2) / math.sqrt(36), p["b"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    nobias = layers.init_conv(rng, 1, 4, 2, bias=False)
    assert set(nobias) == {"w"}


def test_blur_impulse_response_and_zero_padding():
    x = np.zeros((1, 7, 7, 2), np.float32)
    x[0, 3, 3, 1] = 16.0
    y = np.asarray(layers.blur(jnp.asarray(x)))
    np.testing.assert_allclose(y[0, 2:5, 2:5, 1], np.outer([1, 2, 1], [1, 2, 1]), atol=1e-6)
    assert np.all(y[..., 0] == 0)
    ones = np.asarray(layers.blur(jnp.ones((1, 5, 5, 1))))[0, :, :, 0]
    assert ones[2, 2] == pytest.approx(1.0) and ones[0, 0] == pytest.approx(9 / 16)  # zero border


def test_nearest_upsampling_then_blur_is_bilinear_upsampling():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 6, 6, 1))
    y = np.asarray(layers.blur(layers.upsample_nearest(jnp.asarray(x, jnp.float32))))[0, :, :, 0]
    # Half-pixel-centre bilinear interpolation, 1D:
    # out[2i+1] = .75 x[i] + .25 x[i+1], out[2i+2] = .25 x[i] + .75 x[i+1].
    u = np.zeros((12, 6))
    for i in range(5):
        u[2 * i + 1, i], u[2 * i + 1, i + 1] = 0.75, 0.25
        u[2 * i + 2, i], u[2 * i + 2, i + 1] = 0.25, 0.75
    want = u @ x[0, :, :, 0] @ u.T
    np.testing.assert_allclose(y[1:11, 1:11], want[1:11, 1:11], atol=1e-5)


def test_blur_then_average_pooling_is_bilinear_downsampling():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 8, 1))
    y = np.asarray(layers.downsample_average(layers.blur(jnp.asarray(x, jnp.float32))))[0, :, :, 0]
    d = np.zeros((4, 8))
    for i in range(1, 3):  # interior outputs: the [1, 3, 3, 1] / 8 filter at stride 2
        d[i, 2 * i - 1:2 * i + 3] = np.array([1, 3, 3, 1]) / 8
    want = d @ x[0, :, :, 0] @ d.T
    np.testing.assert_allclose(y[1:3, 1:3], want[1:3, 1:3], atol=1e-5)


def test_pixel_norm_gives_unit_rms_features_and_leaky_relu_slope():
    x = np.random.default_rng(5).standard_normal((3, 4, 4, 10)).astype(np.float32) * 7
    y = np.asarray(layers.pixel_norm(jnp.asarray(x)))
    np.testing.assert_allclose(np.mean(y.astype(np.float64) ** 2, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y / x, np.broadcast_to(y[..., :1] / x[..., :1], y.shape), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layers.leaky_relu(jnp.array([-2.0, 0.0, 3.0]))), [-0.4, 0.0, 3.0])
