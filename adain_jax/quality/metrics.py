"""Style-transfer quality metrics that need no downloaded weights, one number per (content, style, result).

* ``content_loss``: the paper's and the port's content loss, MSE between relu4_1 of the result and
  the AdaIN target ``t = adain(f(c), f(s))`` (`adain_jax.model.losses.content_loss`).
* ``style_loss``: the port's mean/std style loss over relu1_1..relu4_1 (`losses.style_loss`: unbiased
  variance + 1e-5, MSE), the loss of the paper's Figure 3.
* ``gram_loss``: the Gram-matrix style loss of Gatys et al. on the same layers, with the Gram matrix
  normalised by the number of positions, ``G = F^T F / (H W)``, and the MSE over its C x C entries
  (Gatys' ``E_l = 1 / (4 N_l^2 M_l^2) sum (G_l - A_l)^2`` with unnormalised G is a quarter of it).
* ``ssim``: SSIM of the result against the content (Wang et al. 2004: 11x11 Gaussian window, sigma
  1.5, K1 = 0.01, K2 = 0.03, data range 1, population moments, valid positions only, averaged over
  the RGB channels), as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`` computes it.
* ``color_distance``: the 1-D Wasserstein (earth mover's) distance between the result's and the
  style's colour histograms (``HIST_BINS`` bins on [0, 1] per RGB channel, as probabilities),
  averaged over the channels: 0 for the same colour distribution, at most 1.

The losses are computed on the VGG of the weights at hand. With random weights they measure
nothing about the official model: they are only comparable between methods run on the same weights.
Everything is batched (N pairs, one number each) and jitted; content and result have the same size,
the style may have another.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.model import architecture, losses, networks, ops

METRICS = ("content_loss", "style_loss", "gram_loss", "ssim", "color_distance")
# Lower is better for every metric but SSIM.
HIGHER_IS_BETTER = {"ssim"}

HIST_BINS = 32  # a power of two: x * bins is exact in float32, so the binning equals float64's
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
_HIGHEST = jax.lax.Precision.HIGHEST


def _per_image(fn):
    """``fn`` on batches of one, mapped over the leading axis of every argument -> (N,) values.

    The port's losses average over the whole batch; a metric needs one value per pair.
    """

    def one(*args):
        return fn(*jax.tree.map(lambda a: a[None], args))

    return jax.vmap(one)


def gram(features: jax.Array) -> jax.Array:
    """(N, H, W, C) features -> (N, C, C) Gram matrices ``F^T F / (H W)``, in at least float32."""
    f = features.astype(jnp.promote_types(features.dtype, jnp.float32))
    return jnp.einsum("nhwc,nhwd->ncd", f, f, precision=_HIGHEST) / (f.shape[1] * f.shape[2])


def gram_style_loss(output_feats: Mapping[str, jax.Array], style_feats: Mapping[str, jax.Array]) -> jax.Array:
    """Gatys' style loss: sum over relu1_1..relu4_1 of the MSE between Gram matrices (batch mean)."""
    return functools.reduce(operator.add, [losses.mse(gram(output_feats[layer]), gram(style_feats[layer]))
                                           for layer in architecture.FEATURE_LAYERS])


def adain_target(content_feat: jax.Array, style_feat: jax.Array) -> jax.Array:
    """The content loss's target: AdaIN of relu4_1 content features to the style's relu4_1 moments."""
    style_mean, style_std = ops.moments(style_feat)
    return ops.adain(content_feat.astype(jnp.promote_types(content_feat.dtype, jnp.float32)), style_mean, style_std)


def _gaussian_window() -> np.ndarray:
    r = SSIM_WINDOW // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / SSIM_SIGMA) ** 2)
    return (g / g.sum()).astype(np.float32)


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean SSIM of NHWC images in [0, 1] of the same shape -> (N,); both sides at least 11 pixels."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two NHWC arrays of the same shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1:3]}")
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    b = b.astype(a.dtype)
    g = jnp.asarray(_gaussian_window(), a.dtype)
    c = a.shape[-1]

    def blur(x):  # separable Gaussian, 'valid' (the positions skimage keeps), channel by channel
        k = x.shape[-1]
        x = jax.lax.conv_general_dilated(x, jnp.tile(g[:, None, None, None], (1, 1, 1, k)), (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=k,
                                         precision=_HIGHEST)
        return jax.lax.conv_general_dilated(x, jnp.tile(g[None, :, None, None], (1, 1, 1, k)), (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=k,
                                            precision=_HIGHEST)

    # Second moments from data shifted by a per-image constant: the same (co)variances, without
    # the float32 cancellation of E[x^2] - E[x]^2 around a large mean.
    sa = a - jnp.mean(a, axis=(1, 2), keepdims=True)
    sb = b - jnp.mean(b, axis=(1, 2), keepdims=True)
    maps = blur(jnp.concatenate([a, b, sa, sb, sa * sa, sb * sb, sa * sb], axis=-1))
    mu_a, mu_b, ms_a, ms_b, e_aa, e_bb, e_ab = (maps[..., i * c:(i + 1) * c] for i in range(7))
    var_a = e_aa - ms_a * ms_a
    var_b = e_bb - ms_b * ms_b
    cov = e_ab - ms_a * ms_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def color_histograms(images: jax.Array, bins: int = HIST_BINS) -> jax.Array:
    """(N, H, W, 3) in [0, 1] -> (N, 3, bins) probabilities; bin k is [k / bins, (k + 1) / bins), 1 in the last."""
    x = images.astype(jnp.promote_types(images.dtype, jnp.float32))
    idx = jnp.clip(jnp.floor(x * bins), 0, bins - 1).astype(jnp.int32)
    idx = jnp.moveaxis(idx, -1, 1).reshape(x.shape[0], x.shape[-1], -1)  # (N, 3, P)
    counts = jax.vmap(jax.vmap(lambda v: jnp.bincount(v, length=bins)))(idx)
    return counts.astype(x.dtype) / idx.shape[-1]


def color_distance(result: jax.Array, style: jax.Array, bins: int = HIST_BINS) -> jax.Array:
    """Per-channel earth mover's distance between colour histograms, averaged over RGB -> (N,)."""
    ha, hb = color_histograms(result, bins), color_histograms(style, bins)
    cdf_diff = jnp.cumsum(ha - hb, axis=-1)
    return jnp.mean(jnp.sum(jnp.abs(cdf_diff), axis=-1) / bins, axis=-1)


@jax.jit
def evaluate(encoder_params: Any, content: jax.Array, style: jax.Array, result: jax.Array) -> dict[str, jax.Array]:
    """Every metric of ``METRICS`` for N (content, style, result) triples -> {name: (N,) float32}.

    content and result: (N, H, W, 3) in [0, 1] (result at the content's size, as `stylize` returns
    it); style: (N, Hs, Ws, 3). ``encoder_params`` is ``weights["encoder"]``.
    """
    if content.shape != result.shape:
        raise ValueError(f"result shape {result.shape} differs from content shape {content.shape}")
    if style.shape[0] != content.shape[0]:
        raise ValueError(f"{style.shape[0]} style images for {content.shape[0]} content images")
    content_feat = networks.encode(encoder_params, content)["relu4_1"]
    style_feats = networks.encode(encoder_params, style)
    result_feats = networks.encode(encoder_params, result)
    target = adain_target(content_feat, style_feats["relu4_1"])
    return {
        "content_loss": _per_image(losses.content_loss)(result_feats["relu4_1"], target),
        "style_loss": _per_image(losses.style_loss)(result_feats, style_feats),
        "gram_loss": _per_image(gram_style_loss)(result_feats, style_feats),
        "ssim": ssim(content, result),
        "color_distance": color_distance(result, style),
    }

