"""Temporal smoothing for video: AdaIN with content statistics averaged across frames.

Flicker in frame-by-frame AdaIN comes partly from the content's relu4_1 mean and std jumping between
neighbouring frames (noise, exposure, objects entering), which the decoder turns into global changes
of colour and texture strength. `stylize_smoothed` replaces each frame's content statistics with
an exponential moving average ``s_t = beta * s_{t-1} + (1 - beta) * x_t`` (``s_0 = x_0``) before
normalising, then proceeds exactly as `adain_jax.transfer.stylize_with_moments` does (alpha blend,
interpolation weights or masks, decode, crop, clip). The average runs across a batch with
`jax.lax.scan` and is carried from one batch to the next, so frames can still be computed in
batches. ``beta = 0`` gives `stylize_with_moments` again (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from adain_jax import controls, transfer, typed_jit
from adain_jax.model import networks, ops, variants


def adain_with_moments(content_feat: jax.Array, content_mean: jax.Array, content_std: jax.Array,
                       style_mean: jax.Array, style_std: jax.Array) -> jax.Array:
    """AdaIN of NHWC features with the content's (N, C) statistics given rather than measured."""
    normalized = (content_feat - content_mean[:, None, None, :]) / content_std[:, None, None, :]
    return normalized * style_std[:, None, None, :] + style_mean[:, None, None, :]


def exponential_average(x: jax.Array, carry: jax.Array, started: jax.Array, beta: jax.Array,
                        valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """EMA along axis 0 of ``x`` (N, ...), continuing from ``carry`` when ``started``.

    Returns the averaged sequence and the value after frame ``valid - 1`` (the next batch's carry;
    padding frames after it do not leak into it).
    """
    init = jnp.where(started, carry, x[0])

    def step(prev, xt):
        cur = beta * prev + (1.0 - beta) * xt
        return cur, cur

    _, seq = jax.lax.scan(step, init, x)
    return seq, jax.lax.dynamic_index_in_dim(seq, valid - 1, keepdims=False)


@typed_jit.jit()
def stylize_smoothed(weights: networks.Weights, content: jax.Array, style_mean: jax.Array, style_std: jax.Array,
                     carry: tuple[jax.Array, jax.Array], started: ArrayLike, beta: ArrayLike, valid: ArrayLike, *,
                     alpha: controls.Alpha = 1.0, style_weights: controls.StyleWeights | None = None,
                     masks: controls.Masks | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """One batch of consecutive frames with smoothed content statistics.

    ``style_mean``/``style_std``: (S, K, C) with S = 1 (one style for every frame) or N (a style video),
    and K styles combined by ``style_weights`` (K,) or ``masks`` (1 or N, H, W, K); K = 1 otherwise.
    ``carry``: the (K, C) mean and std averages after the previous batch's last frame (ignored when
    ``started`` is False). ``valid``: how many leading frames are real (the rest is padding).
    Returns ``(images (N, H, W, 3) in [0, 1], new carry)``.
    """
    variants.require_plain(weights, "--smooth")  # at trace time: the networks below are the plain ones
    n, h, w, _ = content.shape
    feat = networks.encode(weights["encoder"], content)["relu4_1"]
    k = style_mean.shape[1]
    style_mean = jnp.broadcast_to(style_mean, (n, *style_mean.shape[1:]))
    style_std = jnp.broadcast_to(style_std, (n, *style_std.shape[1:]))
    beta = jnp.asarray(beta, jnp.float32)
    valid = jnp.asarray(valid, jnp.int32)
    started = jnp.asarray(started, bool)

    if masks is not None:
        masks = jnp.broadcast_to(jnp.asarray(masks, jnp.float32), (n, h, w, k))
        fmasks = ops.resize_mask_nearest(masks, feat.shape[1], feat.shape[2])
        stats = [ops.moments(feat, fmasks[..., i]) for i in range(k)]  # each region's own statistics
        c_mean = jnp.stack([m for m, _ in stats], axis=1)
        c_std = jnp.stack([s for _, s in stats], axis=1)
    else:
        m, s = ops.moments(feat)
        c_mean, c_std = m[:, None], s[:, None]  # (N, 1, C): one set of statistics for every style
    c_mean, carry_mean = exponential_average(c_mean, carry[0], started, beta, valid)
    c_std, carry_std = exponential_average(c_std, carry[1], started, beta, valid)

    if masks is not None:
        target = jnp.zeros_like(feat)
        for i in range(k):
            region = adain_with_moments(feat, c_mean[:, i], c_std[:, i], style_mean[:, i], style_std[:, i])
            target = target + fmasks[..., i][..., None] * region
    elif style_weights is not None:
        wts = controls.mixing_weights(style_weights, k, jnp)
        target = jnp.zeros_like(feat)
        for i in range(k):
            target = target + wts[i] * adain_with_moments(feat, c_mean[:, 0], c_std[:, 0], style_mean[:, i],
                                                          style_std[:, i])
    else:
        target = adain_with_moments(feat, c_mean[:, 0], c_std[:, 0], style_mean[:, 0], style_std[:, 0])

    out = networks.decode(weights["decoder"], transfer.blend(alpha, target, feat))
    return jnp.clip(out[:, :h, :w, :], 0.0, 1.0), (carry_mean, carry_std)


def initial_carry(num_styles: int, channels: int = 512, masked: bool = False) -> tuple[jax.Array, jax.Array]:
    """The carry for the first batch (its value is ignored while ``started`` is False)."""
    k = num_styles if masked else 1
    return jnp.zeros((k, channels), jnp.float32), jnp.ones((k, channels), jnp.float32)
