"""Style transfer: the jitted `stylize` with every runtime control of the paper.

`stylize` is one XLA program per input shape and control set (alpha, the interpolation weights and
the masks are traced values, so changing them never recompiles). For many contents x one style, the
two stages are also exposed: `style_moments` encodes a style once, and `stylize_with_moments` reuses
its statistics for every content image.

Decoder variants (`adain_jax.model.variants`, recorded as ``weights["variant"]``) work with every
control. ImageNet input normalisation applies to every image the VGG encodes. Skip features come
from the content, the style or both; style features are resized to the content's (nearest). With
several styles they are mixed like the AdaIN targets: weighted by the normalised ``style_weights``,
or region by region with the masks (resized to each feature level); with colour preservation they
are the recoloured styles'. ``alpha`` blends only the relu4_1 target, as the paper defines it; the
skips are passed as they are. `stylize_with_moments` has only the styles' statistics, so a decoder
with style skips needs `stylize`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from adain_jax.model import networks, ops, variants


def _check_images(name: str, x: Any, batch: int | None = None) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be NHWC RGB images of shape (N, H, W, 3), got shape {x.shape}")
    if batch is not None and x.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch {x.shape[0]}; expected 1 or {batch} (one per content image)")


def _as_masks(masks: jax.Array, num_styles: int, content_shape: tuple[int, ...]) -> jax.Array:
    """(N, H, W, K) float masks, or an (N, H, W) integer label map turned into one-hot masks."""
    n, h, w, _ = content_shape
    if masks.ndim == 3 and jnp.issubdtype(masks.dtype, jnp.integer):
        masks = jax.nn.one_hot(masks, num_styles, dtype=jnp.float32)
    if masks.ndim != 4 or masks.shape[1:3] != (h, w) or masks.shape[0] not in (1, n):
        raise ValueError(
            f"masks must have shape (N, {h}, {w}, K) (or an integer label map (N, {h}, {w})) to match "
            f"content {content_shape}, got {masks.shape}")
    if masks.shape[-1] != num_styles:
        raise ValueError(f"masks select among {masks.shape[-1]} styles but {num_styles} style images were given")
    return jnp.broadcast_to(masks.astype(jnp.float32), (n, h, w, num_styles))


@jax.jit
def style_moments(weights: networks.Weights, style: jax.Array) -> tuple[jax.Array, jax.Array]:
    """relu4_1 mean and std of NHWC style images -> two (S, 512) arrays."""
    _check_images("style", style)
    return ops.moments(networks.encode_input(weights, style)["relu4_1"])


def _encode_together(weights, content: jax.Array, styles: jax.Array) -> tuple[dict, dict]:
    """Encoder features of the content and of the style images (as the weights' variant feeds the VGG).

    When their sizes match, both go through the encoder as one batch: one program per layer instead
    of two, with bigger matrix products (a few percent faster on CPU, docs/performance.md). Each
    image is still computed on its own, so the results do not change.
    """
    if content.shape[1:] != styles.shape[1:]:
        return networks.encode_input(weights, content), networks.encode_input(weights, styles)
    both = jnp.concatenate([content, styles.astype(content.dtype)])
    feats = networks.encode_input(weights, both)
    n = content.shape[0]
    return {k: v[:n] for k, v in feats.items()}, {k: v[n:] for k, v in feats.items()}


def feature_masks(masks: Any, num_styles: int, content_shape: tuple[int, ...], feat_hw: tuple[int, int]) -> jax.Array:
    """Content-resolution masks (or a label map) -> (N, h, w, K) masks on the relu4_1 grid."""
    masks = _as_masks(jnp.asarray(masks), num_styles, content_shape)
    return ops.resize_mask_nearest(masks, *feat_hw)


def adain_target(content_feat: jax.Array, style_mean: jax.Array, style_std: jax.Array, *,
                 style_weights: Any = None, fmasks: jax.Array | None = None,
                 content_stats: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """The AdaIN target features for (N, K, C) style statistics, before the alpha blend.

    K == 1 without weights or masks is plain AdaIN; with ``style_weights`` the K AdaIN targets are
    mixed (the port's interpolation), with ``fmasks`` (N, h, w, K) on the feature grid each region
    takes its own style (Lua -mask). ``content_stats``: (N, K, C) content mean and std to use
    instead of the moments of ``content_feat`` (tiled stylization passes the whole image's).
    """
    num_styles = style_mean.shape[1]

    def normalise(k, mask=None):
        if content_stats is None:
            return ops.adain(content_feat, style_mean[:, k], style_std[:, k], content_mask=mask)
        c_mean = content_stats[0][:, min(k, content_stats[0].shape[1] - 1)]
        c_std = content_stats[1][:, min(k, content_stats[1].shape[1] - 1)]
        normalized = (content_feat - c_mean[:, None, None, :]) / c_std[:, None, None, :]
        return normalized * style_std[:, k][:, None, None, :] + style_mean[:, k][:, None, None, :]

    if fmasks is not None:
        target = jnp.zeros_like(content_feat)
        for k in range(num_styles):
            m = fmasks[..., k]
            target = target + m[..., None] * normalise(k, m)
        return target
    if style_weights is not None:
        style_weights = jnp.asarray(style_weights, jnp.float32)
        if style_weights.shape != (num_styles,):
            raise ValueError(f"style_weights must have shape ({num_styles},) for {num_styles} styles, "
                             f"got {style_weights.shape}")
        style_weights = style_weights / jnp.sum(style_weights)
        target = jnp.zeros_like(content_feat)
        for k in range(num_styles):  # accumulate in the port's order
            target = target + style_weights[k] * normalise(k)
        return target
    return normalise(0)


def blend(alpha: Any, target: jax.Array, content_feat: jax.Array) -> jax.Array:
    """``alpha * target + (1 - alpha) * content_feat``; alpha a scalar or one per image."""
    alpha = jnp.asarray(alpha, jnp.float32)
    alpha = alpha.reshape((-1, 1, 1, 1)) if alpha.ndim else alpha
    return alpha * target + (1 - alpha) * content_feat


def _style_skips(style_feats: dict, content_feats: dict, arrange, style_weights, masks) -> dict:
    """The styles' skip features mixed into one per content image, at the content's feature sizes.

    ``arrange`` turns an (S, h, w, C) batch of style features into (N or 1, K, h, w, C); K styles
    are mixed by the normalised ``style_weights`` or by ``masks`` (N, H, W, K) resized to each level.
    """
    out = {}
    for layer, _ in variants.SKIP_LAYERS:
        h, w = content_feats[layer].shape[1:3]
        s = arrange(ops.resize_nearest(style_feats[layer], h, w))
        if masks is not None:
            m = ops.resize_mask_nearest(masks, h, w)  # (N, h, w, K)
            out[layer] = sum(m[..., k, None] * s[:, k] for k in range(s.shape[1]))
        elif style_weights is not None:
            wts = jnp.asarray(style_weights, jnp.float32)
            wts = wts / jnp.sum(wts)
            out[layer] = sum(wts[k] * s[:, k] for k in range(s.shape[1]))
        else:
            out[layer] = s[:, 0]
    return out


def _transfer(weights, content, style_mean, style_std, alpha, style_weights, masks, content_feats=None,
              style_feats=None):
    """Shared body: style statistics (N or 1, K, C) -> stylized images cropped to the content's size.

    ``content_feats``: the content's encoder features if the caller already has them;
    ``style_feats``: the styles' skip features, already mixed (`_style_skips`), for style skips.
    """
    n, h, w, _ = content.shape
    variant = variants.of(weights)
    if content_feats is None:
        content_feats = networks.encode_input(weights, content)
    content_feat = content_feats["relu4_1"]
    num_styles = style_mean.shape[1]
    style_mean = jnp.broadcast_to(style_mean, (n,) + style_mean.shape[1:])
    style_std = jnp.broadcast_to(style_std, (n,) + style_std.shape[1:])
    fmasks = None
    if masks is not None:
        fmasks = feature_masks(masks, num_styles, content.shape, content_feat.shape[1:3])
    target = adain_target(content_feat, style_mean, style_std, style_weights=style_weights, fmasks=fmasks)
    skips = variants.skip_features(variant, content_feats, style_feats)
    out = networks.decode(weights["decoder"], blend(alpha, target, content_feat), variant=variant, skips=skips)
    # Ceil-mode pooling rounded the size up to a multiple of 8; give back exactly the content's size.
    return jnp.clip(out[:, :h, :w, :], 0.0, 1.0)


def _check_controls(style_weights, masks):
    if style_weights is not None and masks is not None:
        raise ValueError("give either style_weights (interpolation) or masks (spatial control), not both")


@jax.jit
def stylize_with_moments(weights: networks.Weights, content: jax.Array, style_mean: jax.Array,
                         style_std: jax.Array, *, alpha: Any = 1.0, style_weights: Any = None,
                         masks: Any = None) -> jax.Array:
    """Like `stylize`, from precomputed `style_moments`.

    ``style_mean``/``style_std``: (S, 512) for one style per content image (S = N or 1), or (K, 512)
    for K styles combined by ``style_weights`` or ``masks`` for every content image.
    """
    _check_images("content", content)
    _check_controls(style_weights, masks)
    if variants.of(weights).style_skips:
        raise ValueError(f"this decoder ({variants.of(weights).describe()}) takes the style images' features, "
                         "not only their statistics: use stylize")
    if style_weights is None and masks is None:
        if style_mean.shape[0] not in (1, content.shape[0]):
            raise ValueError(f"{style_mean.shape[0]} style statistics for {content.shape[0]} content images")
        style_mean, style_std = style_mean[:, None], style_std[:, None]
    else:
        style_mean, style_std = style_mean[None], style_std[None]
    return _transfer(weights, content, style_mean, style_std, alpha, style_weights, masks)


@functools.partial(jax.jit, static_argnames=("preserve_color",))
def stylize(weights: networks.Weights, content: jax.Array, style: jax.Array, *, alpha: Any = 1.0,
            style_weights: Any = None, preserve_color: bool = False, masks: Any = None) -> jax.Array:
    """Stylize NHWC content images in [0, 1]; returns (N, H, W, 3) in [0, 1] at the content's size.

    Args:
      weights: ``{"encoder", "decoder"}`` params, from `load_weights` or `init_weights`, plus
        ``"variant"`` for a decoder variant (`adain_jax.model.variants`; module docstring).
      content: (N, H, W, 3) float images in [0, 1].
      style: (N or 1, Hs, Ws, 3) - one style per content image (1 is broadcast) - or, when
        ``style_weights`` or ``masks`` is given, (K, Hs, Ws, 3): K styles combined for every content.
      alpha: degree of stylization in [0, 1], a scalar or one per content image:
        ``t = alpha * adain(fc, fs) + (1 - alpha) * fc``. Values outside [0, 1] extrapolate.
      style_weights: (K,) non-negative interpolation weights, normalised here to sum to 1.
      preserve_color: CORAL each style image onto its content image's colours before encoding.
      masks: spatial control at content resolution - (N or 1, H, W, K) float weights (mask k picks
        style k; binary masks reproduce the Lua ``-mask`` gather/scatter) or an (N, H, W) integer
        label map with values in [0, K).
    """
    _check_images("content", content)
    _check_controls(style_weights, masks)
    n = content.shape[0]
    multi = style_weights is not None or masks is not None
    _check_images("style", style, batch=None if multi else n)

    if not preserve_color:
        content_feats, style_feats = _encode_together(weights, content, style)
        style_mean, style_std = ops.moments(style_feats["relu4_1"])
        arrange = (lambda x: x[None]) if multi else (lambda x: x[:, None])  # noqa: E731
    else:
        # Colours depend on the content image, so every (content, style) pair is its own style image.
        k = style.shape[0] if multi else 1
        styles = style[None] if multi else style[:, None]  # (1 or N, K, Hs, Ws, 3)
        styles = jnp.broadcast_to(styles, (n, k) + style.shape[1:]).reshape((n * k,) + style.shape[1:])
        targets = jnp.repeat(content, k, axis=0)
        recoloured = ops.coral(styles, targets)
        content_feats, style_feats = _encode_together(weights, content, recoloured)
        style_mean, style_std = ops.moments(style_feats["relu4_1"])
        arrange = lambda x: x.reshape((n, k) + x.shape[1:])  # noqa: E731
    style_mean, style_std = arrange(style_mean), arrange(style_std)
    mixed = None
    if variants.of(weights).style_skips:
        fmasks = None if masks is None else _as_masks(jnp.asarray(masks), style_mean.shape[1], content.shape)
        mixed = _style_skips(style_feats, content_feats, arrange, style_weights, fmasks)
    return _transfer(weights, content, style_mean, style_std, alpha, style_weights, masks, content_feats, mixed)


# ------------------------------------------------------------------------ several devices


def _batch_mesh(n: int, mesh):
    """The mesh to split ``n`` images over (default: the local devices, at most ``n`` of them)."""
    from adain_jax import parallel

    if mesh is None:
        devices = jax.local_devices()
        mesh = parallel.make_mesh(devices[:max(1, min(n, len(devices)))])
    return mesh


def _sharded_call(fn, mesh, n: int, weights, per_image: dict, shared: dict, static: dict):
    """Calls ``fn`` with the ``per_image`` arrays padded to a multiple of the mesh size and split over
    its ``data`` axis, ``shared`` ones and the weights replicated; returns the first ``n`` results.

    Padding repeats the last image: every image is computed on its own, so the extra copies change
    nothing and are dropped. jit compiles one program for the shardings and partitions it.
    """
    import numpy as np

    from adain_jax import parallel

    size = mesh.devices.size
    padded = -(-n // size) * size

    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], padded - n, axis=0)]) if padded > n else x

    batch, rep = parallel.batch_sharded(mesh), parallel.replicated(mesh)
    args = {k: jax.device_put(pad(v), batch) for k, v in per_image.items()}
    args.update({k: (v if v is None else jax.device_put(jnp.asarray(v), rep)) for k, v in shared.items()})
    out = fn(jax.device_put(weights, rep), **args, **static)
    return out[:n]


def _per_image(name: str, value: Any, n: int, per_image: dict, shared: dict) -> None:
    if value is not None and jnp.ndim(value) > 0 and jnp.shape(value)[0] == n and n > 1:
        per_image[name] = value
    else:
        shared[name] = value


def stylize_sharded(weights: networks.Weights, content: Any, style: Any, *, alpha: Any = 1.0,
                    style_weights: Any = None, preserve_color: bool = False, masks: Any = None,
                    mesh=None) -> jax.Array:
    """`stylize` with the batch split over the devices of ``mesh`` (``parallel.make_mesh``; default:
    the local devices). Any batch size works (it is padded to a multiple of the device count)."""
    n = content.shape[0]
    mesh = _batch_mesh(n, mesh)
    if mesh.devices.size == 1:
        return stylize(weights, content, style, alpha=alpha, style_weights=style_weights,
                       preserve_color=preserve_color, masks=masks)
    multi = style_weights is not None or masks is not None
    per_image, shared = {"content": content}, {"style_weights": style_weights}
    _per_image("style", None if multi else style, n, per_image, shared)
    if multi:
        shared["style"] = style
    _per_image("alpha", alpha, n, per_image, shared)
    _per_image("masks", masks, n, per_image, shared)
    fn = lambda w, content, style, **kw: stylize(w, content, style, **kw)  # noqa: E731
    return _sharded_call(fn, mesh, n, weights, per_image, shared, {"preserve_color": preserve_color})


def stylize_with_moments_sharded(weights: networks.Weights, content: Any, style_mean: Any, style_std: Any, *,
                                 alpha: Any = 1.0, style_weights: Any = None, masks: Any = None,
                                 mesh=None) -> jax.Array:
    """`stylize_with_moments` with the batch split over the devices of ``mesh``, as `stylize_sharded`."""
    n = content.shape[0]
    mesh = _batch_mesh(n, mesh)
    if mesh.devices.size == 1:
        return stylize_with_moments(weights, content, style_mean, style_std, alpha=alpha,
                                    style_weights=style_weights, masks=masks)
    multi = style_weights is not None or masks is not None
    per_image, shared = {"content": content}, {"style_weights": style_weights}
    for name, value in (("style_mean", style_mean), ("style_std", style_std)):
        if multi:
            shared[name] = value
        else:
            _per_image(name, value, n, per_image, shared)
    _per_image("alpha", alpha, n, per_image, shared)
    _per_image("masks", masks, n, per_image, shared)
    fn = lambda w, content, style_mean, style_std, **kw: stylize_with_moments(  # noqa: E731
        w, content, style_mean, style_std, **kw)
    return _sharded_call(fn, mesh, n, weights, per_image, shared, {})
