"""AdaIN statistics: per-channel moments (optionally masked or pooled over a batch), AdaIN itself,
nearest resizing of masks and feature maps, and CORAL colour transfer.

Statistics follow the PyTorch port (`function.py` of naoto0804/pytorch-AdaIN): the *unbiased*
variance over the spatial positions plus 1e-5 inside the square root, for content and style alike.
The Lua original differs (biased variance, eps only on the content side); see the README.

All functions take NHWC arrays and are pure, so they trace into one XLA program with the networks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-5
_HIGHEST = jax.lax.Precision.HIGHEST


def moments(x: jax.Array, mask: jax.Array | None = None, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and std of NHWC features -> two (N, C) arrays.

    With ``mask`` (N, H, W) of weights in [0, 1], the moments are those of the weighted positions;
    a binary mask gives exactly the statistics of the gathered positions, with no gather. The
    variance is unbiased (divided by count - 1), as in the PyTorch port; a region of fewer than two
    positions gets variance 0 (+eps) instead of NaN, since its pixels are multiplied out anyway.
    """
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bf16 up to f32; f64 stays f64
    if mask is None:
        mean, var = _mean_var(x)
        return mean, jnp.sqrt(var + eps)
    count, mean, sq = masked_sums(x, mask.astype(x.dtype)[..., None])
    var = jnp.where(count > 1.0, sq / jnp.maximum(count - 1.0, 1.0), 0.0)
    return mean, jnp.sqrt(var + eps)


def masked_sums(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Weighted count, mean and centred sum of squares of NHWC ``x`` over the positions, with
    weights ``w`` (N, H, W, 1) -> (N, 1), (N, C), (N, C): the sufficient statistics of the masked
    moments, which tiled stylization adds up window by window (`adain_jax.tiling`)."""
    count = jnp.sum(w, axis=(1, 2))
    mean = jnp.sum(w * x, axis=(1, 2)) / jnp.maximum(count, 1.0)
    return count, mean, jnp.sum(w * jnp.square(x - mean[:, None, None, :]), axis=(1, 2))


def _mean_var(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-image, per-channel mean and unbiased variance of NHWC ``x`` -> two (N, C) arrays."""
    mean = jnp.mean(x, axis=(1, 2))
    count = x.shape[1] * x.shape[2]
    var = jnp.sum(jnp.square(x - mean[:, None, None, :]), axis=(1, 2)) / max(count - 1, 1)
    return mean, var


def pooled_moments(x: jax.Array, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and std of NHWC features pooled over the batch, the batch-norm analogue ->
    two (N, C) arrays, every row the same.

    The moments of the mixture of the N images' distributions: the mean of their means and the mean
    of their (unbiased) variances plus the variance of their means. So N copies of one image give
    exactly that image's `moments` (bit for bit when N is a power of two), and different images
    give statistics that belong to none of them.
    """
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean, var = _mean_var(x)
    pooled_mean = jnp.mean(mean, axis=0, keepdims=True)
    pooled_var = jnp.mean(var + jnp.square(mean - pooled_mean), axis=0, keepdims=True)
    shape = mean.shape
    return jnp.broadcast_to(pooled_mean, shape), jnp.broadcast_to(jnp.sqrt(pooled_var + eps), shape)


def adain(content: jax.Array, style_mean: jax.Array, style_std: jax.Array,
          content_mask: jax.Array | None = None) -> jax.Array:
    """Adaptive instance normalisation of NHWC content features to (N, C) style moments.

    With ``content_mask`` the content is normalised with the moments of the masked region only
    (the Lua ``-mask`` semantics); the caller weights the result by the mask.
    """
    c_mean, c_std = moments(content, content_mask)
    normalized = (content - c_mean[:, None, None, :]) / c_std[:, None, None, :]
    return normalized * style_std[:, None, None, :] + style_mean[:, None, None, :]


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    scale = np.float32(in_size / out_size)
    idx = np.floor((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale)
    return np.minimum(idx.astype(np.int64), in_size - 1)


def resize_nearest(x: jax.Array, height: int, width: int) -> jax.Array:
    """Nearest-neighbour resize of (N, H, W, ...) arrays (masks, feature maps), sampling at pixel centres.

    Source index floor((i + 0.5) * in / out), computed in float32 as PyTorch's ``nearest-exact``
    and Pillow's NEAREST do. The indices are static, so this is a strided slice, not a gather;
    the same size returns ``x`` itself.
    """
    if x.shape[1:3] == (height, width):
        return x
    return x[:, _nearest_index(x.shape[1], height)][:, :, _nearest_index(x.shape[2], width)]


def resize_mask_nearest(masks: jax.Array, height: int, width: int) -> jax.Array:
    """`resize_nearest` of (N, H, W, K) masks (or (N, H, W) label maps) to the feature grid."""
    return resize_nearest(masks, height, width)


def _sym_sqrt_and_inv_sqrt(cov: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Square root of a batch of SPD 3x3 matrices and its inverse, via one eigendecomposition.

    The port uses SVD then `torch.inverse`; for symmetric positive-definite matrices the
    eigendecomposition gives the same matrices.
    """
    w, v = jnp.linalg.eigh(cov)
    w = jnp.maximum(w, 0.0)
    sqrt = jnp.einsum("...ij,...j,...kj->...ik", v, jnp.sqrt(w), v, precision=_HIGHEST)
    inv_sqrt = jnp.einsum("...ij,...j,...kj->...ik", v, 1.0 / jnp.sqrt(w), v, precision=_HIGHEST)
    return sqrt, inv_sqrt


def _standardise(images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(N, H, W, 3) -> standardised pixels (N, P, 3), mean and unbiased std (N, 1, 3), and the
    covariance of the standardised pixels summed plus the identity (N, 3, 3): CORAL's statistics."""
    flat = images.astype(jnp.float32).reshape(images.shape[0], -1, 3)
    mean = jnp.mean(flat, axis=1, keepdims=True)
    std = jnp.std(flat, axis=1, keepdims=True, ddof=1)
    norm = (flat - mean) / std
    cov = jnp.einsum("npi,npj->nij", norm, norm, precision=_HIGHEST) + jnp.eye(3)
    return norm, mean, std, cov


def coral(source: jax.Array, target: jax.Array) -> jax.Array:
    """CORAL: give NHWC ``source`` images the colour mean and covariance of ``target`` images.

    The PyTorch port's exact recipe: channels standardised with the unbiased std, covariance of
    the standardised pixels *summed* (not averaged) plus the identity, then
    ``sqrt(cov_t) @ inv(sqrt(cov_s)) @ source`` and the target's mean/std put back. Used for colour
    preservation with source = style image, target = content image.
    """
    _, t_mean, t_std, t_cov = _standardise(target)
    return coral_to_stats(source, t_mean, t_std, t_cov)


def coral_to_stats(source: jax.Array, t_mean: jax.Array, t_std: jax.Array, t_cov: jax.Array) -> jax.Array:
    """`coral` with the target given by its statistics: mean and unbiased std (N, 1, 3) and the summed
    covariance of its standardised pixels plus the identity (N, 3, 3). Tiled stylization computes
    them over a large content in chunks (`adain_jax.tiling.colour_stats`)."""
    s_norm, _, _, s_cov = _standardise(source)
    t_sqrt, _ = _sym_sqrt_and_inv_sqrt(t_cov)
    _, s_inv_sqrt = _sym_sqrt_and_inv_sqrt(s_cov)
    transform = jnp.einsum("nij,njk->nik", t_sqrt, s_inv_sqrt, precision=_HIGHEST)
    out = jnp.einsum("nij,npj->npi", transform, s_norm, precision=_HIGHEST)
    return (out * t_std + t_mean).reshape(source.shape)


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2/2 max-pool in PyTorch's ceil mode: an odd trailing row/column is pooled on its own.

    The max of four strided slices rather than a reduce-window: XLA:CPU fuses it into the loop of
    the bias, ReLU and the next layer's padding, where a reduce-window is a pass of its own.
    """
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
    return jnp.maximum(jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
                       jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


def interleave_phases(z: jax.Array) -> jax.Array:
    """(N, h + 1, w + 1, 4 O) phases of an edge-padded 2x2 convolution -> the (N, 2h, 2w, O) image:
    pixel (2i + p, 2j + q) is phase 2p + q of z's pixel (i + p, j + q) (`networks.upsample_reflect_conv`)."""
    n, h, w, o = z.shape[0], z.shape[1] - 1, z.shape[2] - 1, z.shape[3] // 4
    rows = [jnp.stack([z[:, p:p + h, q:q + w, (2 * p + q) * o:(2 * p + q + 1) * o] for q in range(2)], axis=3)
            for p in range(2)]  # each (n, h, w, 2, o)
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, o)
