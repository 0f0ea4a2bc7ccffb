"""AdaIN statistics and CORAL against independent numpy formulas (the PyTorch port's definitions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from adain_jax.model import ops


def np_moments(x):  # the port's calc_mean_std: unbiased variance + 1e-5 inside the sqrt
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    return flat.mean(1), np.sqrt(flat.var(1, ddof=1) + 1e-5)


def test_moments_are_unbiased_with_eps_inside_the_sqrt():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(2, 5, 7, 4)).astype(np.float32)
    mean, std = ops.moments(jnp.asarray(x))
    m, s = np_moments(x.astype(np.float64))
    np.testing.assert_allclose(mean, m, rtol=1e-5)
    np.testing.assert_allclose(std, s, rtol=1e-5)


def test_moments_gradient_is_the_closed_form_under_jit_and_vmap():
    # d/dx of sum(a * mean + b * std) = a / count + b * (x - mean) / ((count - 1) * std), in float64 numpy:
    # the closed form PyTorch's var_backward computes, which the style loss's gradient must match.
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=(3, 6, 5, 4)).astype(np.float32)
    a, b = rng.normal(size=(2, 3, 4)).astype(np.float32)

    def objective(x):
        mean, std = ops.moments(x)
        return jnp.sum(a * mean) + jnp.sum(b * std)

    x64 = x.astype(np.float64)
    m, s = np_moments(x64)
    count = x.shape[1] * x.shape[2]
    centred = x64 - m[:, None, None]
    expected = a[:, None, None] / count + b[:, None, None] * centred / ((count - 1) * s[:, None, None])
    grad = jax.jit(jax.grad(objective))(jnp.asarray(x))
    np.testing.assert_allclose(grad, expected, rtol=2e-5, atol=1e-7)
    # per image, vmapped over a leading axis: the same numbers
    per_image = jax.vmap(jax.grad(lambda xi, ai, bi: jnp.sum(ai * ops.moments(xi[None])[0])
                                  + jnp.sum(bi * ops.moments(xi[None])[1])))(jnp.asarray(x), a, b)
    np.testing.assert_allclose(per_image, expected, rtol=2e-5, atol=1e-7)


def test_binary_masked_moments_equal_the_moments_of_the_gathered_positions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 5, 3)).astype(np.float32)
    mask = (rng.random((1, 6, 5)) > 0.4).astype(np.float32)
    mean, std = ops.moments(jnp.asarray(x), jnp.asarray(mask))
    picked = x[0][mask[0] > 0][None, :, None, :]  # (1, P, 1, C): the Lua gather
    m, s = np_moments(picked.astype(np.float64))
    np.testing.assert_allclose(mean, m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, s, rtol=1e-5)


def test_empty_or_single_position_region_has_its_mean_and_std_sqrt_eps():
    x = np.full((1, 3, 3, 2), 7.0, np.float32)
    x[0, 0, 0] = (3.0, -2.0)  # the one position the single-position mask picks
    # Fewer than two positions: variance 0, so std = sqrt(0 + eps). The mean is that of the region:
    # the picked pixel for one position, the empty sum (0) for none.
    for count, expected_mean in ((0, [0.0, 0.0]), (1, [3.0, -2.0])):
        mask = np.zeros((1, 3, 3), np.float32)
        mask.flat[:count] = 1
        mean, std = ops.moments(jnp.asarray(x), jnp.asarray(mask))
        np.testing.assert_allclose(np.asarray(mean), [expected_mean], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(std), np.full((1, 2), np.sqrt(1e-5)), rtol=1e-6)


def test_adain_output_carries_the_style_moments():
    rng = np.random.default_rng(2)
    content = jnp.asarray(rng.normal(1.0, 2.0, size=(2, 8, 8, 5)).astype(np.float32))
    s_mean = jnp.asarray(rng.normal(size=(2, 5)).astype(np.float32))
    s_std = jnp.asarray(rng.uniform(0.5, 2.0, size=(2, 5)).astype(np.float32))
    out = ops.adain(content, s_mean, s_std)
    mean, _ = np_moments(np.asarray(out, np.float64))
    np.testing.assert_allclose(mean, s_mean, atol=1e-5)
    # std of the output is s_std * std_c / sqrt(var_c + eps): equal up to the eps.
    flat = np.asarray(out, np.float64).reshape(2, -1, 5)
    np.testing.assert_allclose(flat.std(1, ddof=1), s_std, rtol=1e-4)


def np_coral(source, target):
    """The port's coral() on (3, H, W): unbiased std, summed covariance + I, SVD square roots."""

    def stats(img):
        f = img.reshape(3, -1)
        mean, std = f.mean(1, keepdims=True), f.std(1, ddof=1, keepdims=True)
        norm = (f - mean) / std
        return f, mean, std, norm, norm @ norm.T + np.eye(3)

    def mat_sqrt(a):
        u, d, vt = np.linalg.svd(a)
        return u @ np.diag(np.sqrt(d)) @ vt

    _, _, _, s_norm, s_cov = stats(source)
    _, t_mean, t_std, _, t_cov = stats(target)
    out = mat_sqrt(t_cov) @ np.linalg.inv(mat_sqrt(s_cov)) @ s_norm
    return (out * t_std + t_mean).reshape(source.shape)


def test_coral_matches_the_ports_svd_recipe():
    rng = np.random.default_rng(3)
    src = rng.random((2, 9, 11, 3)).astype(np.float32)
    tgt = (rng.random((2, 9, 11, 3)) * [0.3, 0.9, 0.5]).astype(np.float32)
    out = np.asarray(ops.coral(jnp.asarray(src), jnp.asarray(tgt)))
    for n in range(2):
        expected = np_coral(src[n].transpose(2, 0, 1).astype(np.float64), tgt[n].transpose(2, 0, 1).astype(np.float64))
        np.testing.assert_allclose(out[n], expected.transpose(1, 2, 0), atol=2e-5)
    # and it really moved the colours: per-channel means are the target's
    np.testing.assert_allclose(out.mean((1, 2)), tgt.mean((1, 2)), atol=1e-5)


@pytest.mark.parametrize("h,w,oh,ow", [(29, 45, 4, 6), (64, 48, 8, 6), (800, 600, 100, 75), (729, 512, 92, 64)])
def test_mask_resize_samples_pixel_centres_like_pillow_nearest(h, w, oh, ow):
    mask = (np.random.default_rng(4).random((h, w)) * 255).astype(np.uint8)
    ours = np.asarray(ops.resize_mask_nearest(jnp.asarray(mask[None, :, :, None]), oh, ow))[0, :, :, 0]
    pil = np.asarray(Image.fromarray(mask).resize((ow, oh), Image.NEAREST))
    np.testing.assert_array_equal(ours, pil)


def test_pooled_moments_are_the_whole_batch_as_one_sample_with_per_image_bessel_correction():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, size=(3, 6, 5, 4)) * rng.uniform(0.5, 2.0, (3, 1, 1, 4)) + rng.normal(0, 2, (3, 1, 1, 4))
    mean, std = ops.pooled_moments(jnp.asarray(x, jnp.float32))
    flat = x.reshape(-1, 4)  # every pixel of every image, float64
    p = 6 * 5
    # the biased variance of all pixels, plus each image's Bessel correction: sum_i S_i / (N P (P - 1))
    centred = x.reshape(3, p, 4) - x.reshape(3, p, 4).mean(1, keepdims=True)
    var = flat.var(0) + np.square(centred).sum((0, 1)) / (3 * p * (p - 1))
    for row in range(3):  # the same statistics for every image of the batch
        np.testing.assert_allclose(mean[row], flat.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std[row], np.sqrt(var + 1e-5), rtol=1e-5)
    # copies of one image: exactly that image's own moments
    same = jnp.asarray(np.repeat(x[:1], 4, axis=0), jnp.float32)
    for a, b in zip(ops.pooled_moments(same), ops.moments(same)):
        np.testing.assert_array_equal(a, b)


def test_resize_nearest_of_feature_maps_is_the_mask_rule_and_the_identity_at_the_same_size():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 9, 5)), jnp.float32)
    assert ops.resize_nearest(x, 7, 9) is x
    np.testing.assert_array_equal(ops.resize_nearest(x, 4, 13), ops.resize_mask_nearest(x, 4, 13))
    np.testing.assert_array_equal(ops.resize_nearest(x, 14, 18)[:, ::2, ::2], x)  # 2x up: each pixel twice
