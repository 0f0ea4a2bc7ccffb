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
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from adain_jax import controls, typed_jit
from adain_jax import precision as precision_lib
from adain_jax.controls import Alpha, Masks, StyleWeights
from adain_jax.model import networks, ops, variants
from adain_jax.model.variants import Weights
from adain_jax.precision import Precision


def check_images(name: str, x: jax.Array | np.ndarray, batch: int | None = None, *, single: bool = False) -> None:
    """ControlError unless ``x`` is NHWC RGB (with batch 1 or ``batch``, when given).

    ``single``: the caller also takes one HWC image, and the message says so.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
        one = " or one image of shape (H, W, 3)" if single else ""
        raise controls.ControlError(controls.SHAPES,
                                    f"{name} must be NHWC RGB images of shape (N, H, W, 3){one}, got shape {x.shape}")
    if batch is not None:
        controls.check_style_batch(name, x.shape[0], batch)


def features(weights: Weights, images: jax.Array, precision: Precision = "float32") -> dict[str, jax.Array]:
    """Encoder features (as the weights' variant feeds the VGG), computed in ``precision`` and returned
    in float32: the statistics taken from them are always float32."""
    feats = networks.encode_input(weights, images, precision_lib.dtype(precision))
    return {k: v.astype(jnp.float32) for k, v in feats.items()}


@typed_jit.jit(static_argnames=("precision",))
def style_moments(weights: Weights, style: ArrayLike, *,
                  precision: Precision = "float32") -> tuple[jax.Array, jax.Array]:
    """relu4_1 mean and std of NHWC style images -> two (S, 512) float32 arrays."""
    style = jnp.asarray(style)
    check_images("style", style)
    return ops.moments(features(weights, style, precision)["relu4_1"])


def _encode_together(weights: Weights, content: jax.Array, styles: jax.Array,
                     precision: Precision) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Encoder features of the content and of the style images (as the weights' variant feeds the VGG).

    When their sizes match, both go through the encoder as one batch: one program per layer instead
    of two, with bigger matrix products (a few percent faster on CPU, docs/performance.md). Each
    image is still computed on its own, so the results do not change.
    """
    if content.shape[1:] != styles.shape[1:]:
        return features(weights, content, precision), features(weights, styles, precision)
    both = jnp.concatenate([content, styles.astype(content.dtype)])
    feats = features(weights, both, precision)
    n = content.shape[0]
    return {k: v[:n] for k, v in feats.items()}, {k: v[n:] for k, v in feats.items()}


def adain_target(content_feat: jax.Array, style_mean: jax.Array, style_std: jax.Array, *,
                 style_weights: StyleWeights | None = None, fmasks: jax.Array | None = None,
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
        mixing = controls.mixing_weights(style_weights, num_styles, jnp)
        target = jnp.zeros_like(content_feat)
        for k in range(num_styles):  # accumulate in the port's order
            target = target + mixing[k] * normalise(k)
        return target
    return normalise(0)


def blend(alpha: Alpha, target: jax.Array, content_feat: jax.Array) -> jax.Array:
    """``alpha * target + (1 - alpha) * content_feat``; alpha a scalar or one per image."""
    a = jnp.asarray(alpha, jnp.float32)
    a = a.reshape((-1, 1, 1, 1)) if a.ndim else a
    return a * target + (1 - a) * content_feat


def _style_skips(style_feats: dict[str, jax.Array], content_feats: dict[str, jax.Array],
                 arrange: Callable[[jax.Array], jax.Array], style_weights: StyleWeights | None,
                 masks: jax.Array | None) -> dict[str, jax.Array]:
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
            out[layer] = functools.reduce(operator.add, [m[..., k, None] * s[:, k] for k in range(s.shape[1])])
        elif style_weights is not None:
            wts = controls.mixing_weights(style_weights, s.shape[1], jnp)
            out[layer] = functools.reduce(operator.add, [wts[k] * s[:, k] for k in range(s.shape[1])])
        else:
            out[layer] = s[:, 0]
    return out


def _transfer(weights: Weights, content: jax.Array, style_mean: jax.Array, style_std: jax.Array, alpha: Alpha,
              style_weights: StyleWeights | None, masks: Masks | None, precision: Precision,
              content_feats: dict[str, jax.Array] | None = None,
              style_feats: dict[str, jax.Array] | None = None) -> jax.Array:
    """Shared body: style statistics (N or 1, K, C) -> stylized images cropped to the content's size.

    ``content_feats``: the content's encoder features if the caller already has them;
    ``style_feats``: the styles' skip features, already mixed (`_style_skips`), for style skips.
    """
    n, h, w, _ = content.shape
    variant = variants.of(weights)
    if content_feats is None:
        content_feats = features(weights, content, precision)
    content_feat = content_feats["relu4_1"]
    num_styles = style_mean.shape[1]
    style_mean = jnp.broadcast_to(style_mean, (n, *style_mean.shape[1:]))
    style_std = jnp.broadcast_to(style_std, (n, *style_std.shape[1:]))
    fmasks = None
    if masks is not None:
        fmasks = controls.region_masks(masks, num_styles, content.shape, (content_feat.shape[1], content_feat.shape[2]))
    target = adain_target(content_feat, style_mean, style_std, style_weights=style_weights, fmasks=fmasks)
    skips = variants.skip_features(variant, content_feats, style_feats)
    out = networks.decode(weights["decoder"], blend(alpha, target, content_feat), precision_lib.dtype(precision),
                          variant=variant, skips=skips)
    # Ceil-mode pooling rounded the size up to a multiple of 8; give back exactly the content's size.
    return jnp.clip(out[:, :h, :w, :], 0.0, 1.0)


@typed_jit.jit(static_argnames=("precision",))
def stylize_with_moments(weights: Weights, content: ArrayLike, style_mean: ArrayLike, style_std: ArrayLike, *,
                         alpha: Alpha = 1.0, style_weights: StyleWeights | None = None,
                         masks: Masks | None = None, precision: Precision = "float32") -> jax.Array:
    """Like `stylize`, from precomputed `style_moments`.

    ``style_mean``/``style_std``: (S, 512) for one style per content image (S = N or 1), or (K, 512)
    for K styles combined by ``style_weights`` or ``masks`` for every content image.
    """
    content, mean, std = jnp.asarray(content), jnp.asarray(style_mean), jnp.asarray(style_std)
    check_images("content", content)
    controls.check_exclusive(style_weights, masks)
    if variants.of(weights).style_skips:
        raise ValueError(f"this decoder ({variants.of(weights).describe()}) takes the style images' features, "
                         "not only their statistics: use stylize")
    if style_weights is None and masks is None:
        controls.check_style_batch("style statistics", mean.shape[0], content.shape[0])
        mean, std = mean[:, None], std[:, None]
    else:
        mean, std = mean[None], std[None]
    return _transfer(weights, content, mean, std, alpha, style_weights, masks, precision)


def _one_image_masks(masks: Masks) -> jax.Array:
    """A single image's masks as a batch of one: (H, W, K) float weights or an (H, W) label map get a
    leading axis; the batch layouts (1, H, W, K) and (1, H, W) are kept."""
    m = jnp.asarray(masks)
    label_map = jnp.issubdtype(m.dtype, jnp.integer)
    return m[None] if m.ndim == (2 if label_map else 3) else m


@typed_jit.jit(static_argnames=("preserve_color", "precision"))
def stylize(weights: Weights, content: ArrayLike, style: ArrayLike, *, alpha: Alpha = 1.0,
            style_weights: StyleWeights | None = None, preserve_color: bool = False,
            masks: Masks | None = None, precision: Precision = "float32") -> jax.Array:
    """Stylize NHWC content images in [0, 1]; returns (N, H, W, 3) in [0, 1] at the content's size.

    One (H, W, 3) content image is stylized as a batch of one and returned as (H, W, 3), so
    ``jax.vmap`` maps `stylize` over images and ``jax.grad`` differentiates it with respect to the
    content, alpha, the style weights or the masks (the clip to [0, 1] passes no gradient where it is
    active).

    Args:
      weights: ``{"encoder", "decoder"}`` params, from `load_weights` or `init_weights`, plus
        ``"variant"`` for a decoder variant (`adain_jax.model.variants`; module docstring).
      content: (N, H, W, 3) float images in [0, 1], or one (H, W, 3) image.
      style: (N or 1, Hs, Ws, 3) - one style per content image (1 is broadcast) - or, when
        ``style_weights`` or ``masks`` is given, (K, Hs, Ws, 3): K styles combined for every content.
        With one content image, one (Hs, Ws, 3) style image is taken too.
      alpha: degree of stylization in [0, 1], a scalar or one per content image:
        ``t = alpha * adain(fc, fs) + (1 - alpha) * fc``. Values outside [0, 1] extrapolate.
      style_weights: (K,) non-negative interpolation weights, normalised here to sum to 1.
      preserve_color: CORAL each style image onto its content image's colours before encoding.
      masks: spatial control at content resolution - (N or 1, H, W, K) float weights (mask k picks
        style k; binary masks reproduce the Lua ``-mask`` gather/scatter) or an (N, H, W) integer
        label map with values in [0, K); with one content image also (H, W, K) or (H, W).
      precision: "float32" (the default; the PyTorch port's numbers) or "bfloat16": convolutions with
        bfloat16 operands and float32 accumulation (oneDNN on CPUs with AVX512-BF16/AMX-BF16, XLA's
        own on GPU/TPU), statistics and output in float32 (`adain_jax.precision`). A static argument.
    """
    content, style = jnp.asarray(content), jnp.asarray(style)
    single = content.ndim == 3 and content.shape[-1] == 3
    if single:
        content = content[None]
        style = style[None] if style.ndim == 3 else style
        masks = None if masks is None else _one_image_masks(masks)
    check_images("content", content, single=True)
    out = _stylize_batch(weights, content, style, alpha, style_weights, preserve_color, masks, precision)
    return out[0] if single else out


def _stylize_batch(weights: Weights, content: jax.Array, style: jax.Array, alpha: Alpha,
                   style_weights: StyleWeights | None, preserve_color: bool, masks: Masks | None,
                   precision: Precision) -> jax.Array:
    """`stylize` of an NHWC batch (traced inside its jit)."""
    controls.check_exclusive(style_weights, masks)
    n = content.shape[0]
    multi = style_weights is not None or masks is not None
    check_images("style", style, batch=None if multi else n)

    arrange: Callable[[jax.Array], jax.Array]
    if not preserve_color:
        content_feats, style_feats = _encode_together(weights, content, style, precision)
        style_mean, style_std = ops.moments(style_feats["relu4_1"])
        arrange = (lambda x: x[None]) if multi else (lambda x: x[:, None])
    else:
        # Colours depend on the content image, so every (content, style) pair is its own style image.
        styles, k = controls.paired_styles(style, n, multi, jnp)
        targets = jnp.repeat(content, k, axis=0)
        recoloured = ops.coral(styles, targets)
        content_feats, style_feats = _encode_together(weights, content, recoloured, precision)
        style_mean, style_std = ops.moments(style_feats["relu4_1"])

        def arrange(x: jax.Array) -> jax.Array:
            return x.reshape((n, k, *x.shape[1:]))
    style_mean, style_std = arrange(style_mean), arrange(style_std)
    mixed = None
    if variants.of(weights).style_skips:
        fmasks = None if masks is None else controls.region_masks(masks, style_mean.shape[1], content.shape,
                                                                   (content.shape[1], content.shape[2]))
        mixed = _style_skips(style_feats, content_feats, arrange, style_weights, fmasks)
    return _transfer(weights, content, style_mean, style_std, alpha, style_weights, masks, precision,
                     content_feats, mixed)


# ------------------------------------------------------------------------ several devices


def _batch_mesh(n: int, mesh: jax.sharding.Mesh | None) -> jax.sharding.Mesh:
    """The mesh to split ``n`` images over (default: the local devices, at most ``n`` of them)."""
    from adain_jax import parallel

    if mesh is None:
        devices = jax.local_devices()
        mesh = parallel.make_mesh(devices[:max(1, min(n, len(devices)))])
    return mesh


def _sharded_call(fn: Callable[..., jax.Array], mesh: jax.sharding.Mesh, n: int, weights: Weights,
                  per_image: dict[str, Any], shared: dict[str, Any], static: dict[str, Any]) -> jax.Array:
    """Calls ``fn`` with the ``per_image`` arrays padded to a multiple of the mesh size and split over
    its ``data`` axis, ``shared`` ones and the weights replicated; returns the first ``n`` results.

    Padding repeats the last image: every image is computed on its own, so the extra copies change
    nothing and are dropped. jit compiles one program for the shardings and partitions it.
    """
    from adain_jax import parallel

    size = mesh.devices.size
    padded = -(-n // size) * size

    def pad(x: ArrayLike) -> np.ndarray:
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], padded - n, axis=0)]) if padded > n else x

    batch, rep = parallel.batch_sharded(mesh), parallel.replicated(mesh)
    args = {k: jax.device_put(pad(v), batch) for k, v in per_image.items()}
    args.update({k: (v if v is None else jax.device_put(jnp.asarray(v), rep)) for k, v in shared.items()})
    out = fn(jax.device_put(weights, rep), **args, **static)
    return out[:n]


def _per_image(name: str, value: ArrayLike | StyleWeights | None, n: int, per_image: dict[str, Any],
               shared: dict[str, Any]) -> None:
    if value is not None and np.ndim(value) > 0 and np.shape(value)[0] == n and n > 1:
        per_image[name] = value
    else:
        shared[name] = value


def stylize_sharded(weights: Weights, content: ArrayLike, style: ArrayLike, *, alpha: Alpha = 1.0,
                    style_weights: StyleWeights | None = None, preserve_color: bool = False,
                    masks: Masks | None = None, mesh: jax.sharding.Mesh | None = None,
                    precision: Precision = "float32") -> jax.Array:
    """`stylize` with the batch split over the devices of ``mesh`` (``parallel.make_mesh``; default:
    the local devices). Any batch size works (it is padded to a multiple of the device count)."""
    n = jnp.shape(content)[0]
    mesh = _batch_mesh(n, mesh)
    if mesh.devices.size == 1:
        return stylize(weights, content, style, alpha=alpha, style_weights=style_weights,
                       preserve_color=preserve_color, masks=masks, precision=precision)
    multi = style_weights is not None or masks is not None
    per_image: dict[str, Any] = {"content": content}
    shared: dict[str, Any] = {"style_weights": style_weights}
    _per_image("style", None if multi else style, n, per_image, shared)
    if multi:
        shared["style"] = style
    _per_image("alpha", alpha, n, per_image, shared)
    _per_image("masks", masks, n, per_image, shared)

    def fn(w: Weights, content: jax.Array, style: jax.Array, **kw: Any) -> jax.Array:
        return stylize(w, content, style, **kw)
    return _sharded_call(fn, mesh, n, weights, per_image, shared,
                         {"preserve_color": preserve_color, "precision": precision})


def stylize_with_moments_sharded(weights: Weights, content: ArrayLike, style_mean: ArrayLike,
                                 style_std: ArrayLike, *, alpha: Alpha = 1.0,
                                 style_weights: StyleWeights | None = None, masks: Masks | None = None,
                                 mesh: jax.sharding.Mesh | None = None,
                                 precision: Precision = "float32") -> jax.Array:
    """`stylize_with_moments` with the batch split over the devices of ``mesh``, as `stylize_sharded`."""
    n = jnp.shape(content)[0]
    mesh = _batch_mesh(n, mesh)
    if mesh.devices.size == 1:
        return stylize_with_moments(weights, content, style_mean, style_std, alpha=alpha,
                                    style_weights=style_weights, masks=masks, precision=precision)
    multi = style_weights is not None or masks is not None
    per_image: dict[str, Any] = {"content": content}
    shared: dict[str, Any] = {"style_weights": style_weights}
    for name, value in (("style_mean", style_mean), ("style_std", style_std)):
        if multi:
            shared[name] = value
        else:
            _per_image(name, value, n, per_image, shared)
    _per_image("alpha", alpha, n, per_image, shared)
    _per_image("masks", masks, n, per_image, shared)

    def fn(w: Weights, content: jax.Array, style_mean: jax.Array, style_std: jax.Array, **kw: Any) -> jax.Array:
        return stylize_with_moments(w, content, style_mean, style_std, **kw)
    return _sharded_call(fn, mesh, n, weights, per_image, shared, {"precision": precision})
