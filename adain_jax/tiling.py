"""Exact tiled stylization: any image size in memory bounded by the tile, equal to `stylize` to rounding.

AdaIN needs only global per-channel statistics of the content's relu4_1 features, which add up
exactly from a partition of the feature grid; every other layer is local. So:

- pass 1 encodes overlapping windows and keeps, per window, the count, mean and centred sum of
  squares of the features in its *centre* (the centres partition the feature grid); they are
  combined on the host in float64 (Chan et al.'s pairwise formula, no E[x^2] - E[x]^2
  cancellation) into the port's unbiased mean/std (+eps), masked or not;
- pass 2 encodes each window again, applies AdaIN with those global statistics, decodes, and
  writes only the window's centre into the output array.

Window geometry (per axis; `_axis_windows`). Windows start on the encoder's /8 grid, so the three
ceil-mode poolings pair the same rows as on the whole image, and every window has the same pixel
length: the last one ends at the true image border (reflection padding and the odd trailing
ceil-mode window happen exactly as on the whole image), the others end inside the image, where the
rows they get wrong are inside the halo. The halo is the number of feature rows next to an inner
window edge that differ from the whole image's (`halo`, derived from the layer table: 8 at a
window's start, 9 at its end, where a partial pooling window adds one row per level). One window
shape means one compiled program per pass, reused for every window.

Colour preservation needs the whole content's colour mean and covariance: computed exactly in
float64 on the host in row chunks before tiling (cheap in pixel space). Decoder variants: input
normalisation tiles (it is per pixel); skip connections are refused (`check_variant`, `UntiledVariantError`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax import controls, transfer
from adain_jax import precision as precision_lib
from adain_jax.model import architecture, networks, ops, variants
from adain_jax.precision import Precision

_F = architecture.DOWNSAMPLE_FACTOR
_ROW_CHUNK = 256  # pixel rows per host chunk for the colour statistics
_coral_to_stats = jax.jit(ops.coral_to_stats)


def _taint(layers: tuple[architecture.ConvSpec, ...], rows: int, at_end: bool, decoder: bool) -> int:
    """Rows next to an inner window edge that differ from the whole image's, after ``layers``.

    A 3x3 convolution spreads a wrong row by one (its reflection padding at an inner edge is wrong
    too). A 2x2 ceil-mode pooling aligned at the window start maps k wrong rows to ceil(k / 2); at
    the window end the length may be odd, so a partial pooling window (wrong even with k = 0) adds
    one: at most k // 2 + 1. Nearest 2x upsampling doubles them.
    """
    for spec in layers:
        if spec.kernel_size == 3:
            rows += 1
        if decoder and spec.upsample_after:
            rows *= 2
        elif not decoder and spec.pool_after:
            rows = rows // 2 + 1 if at_end else (rows + 1) // 2
    return rows


@functools.cache
def halo(decode: bool = True) -> tuple[int, int]:
    """(start, end) halo in relu4_1 rows: encoder only (pass 1) or encoder + decoder (pass 2)."""
    out = []
    for at_end in (False, True):
        rows = _taint(architecture.ENCODER, 0, at_end, decoder=False)
        if decode:  # back in pixel rows after the decoder; a feature row is 8 pixel rows
            rows = -(-_taint(architecture.DECODER, rows, at_end, decoder=True) // _F)
        out.append(rows)
    return out[0], out[1]


def min_tile() -> int:
    """The smallest tile (pixels) whose window keeps at least one feature row after both halos."""
    return _F * (sum(halo(True)) + 1)


def check_tile(tile: int) -> None:
    """ValueError unless ``tile`` is 0 (no tiling) or at least `min_tile`."""
    if tile != 0 and tile < min_tile():
        start, end = halo(True)
        raise ValueError(
            f"tile size {tile} is too small: each tile loses a {start * _F}-pixel halo at its start and "
            f"{end * _F} pixels at its end to the network's receptive field; use a tile of at least "
            f"{min_tile()} pixels (0 turns tiling off)")


class UntiledVariantError(ValueError):
    """Weights whose decoder cannot be tiled (skip connections): run them untiled."""


def check_variant(weights) -> variants.DecoderVariant:
    """The weights' variant; UntiledVariantError for one with skip connections (the plain decoder only)."""
    variant = variants.of(weights)
    if variant.skip != "none":
        raise UntiledVariantError(f"tiled stylization supports the decoder without skip connections only (these "
                                  f"weights: {variant.describe()})")
    return variant


@dataclasses.dataclass(frozen=True)
class Window:
    """One axis of one window: pixel rows [start, start + length) and its centre.

    ``fstart``/``flen``: the window on the feature grid; ``centre``: its centre on the feature grid
    (image coordinates) whose decoded pixels (or statistics) this window contributes.
    """

    start: int
    length: int
    fstart: int
    flen: int
    centre: tuple[int, int]


def _axis_windows(size: int, window: int, start_halo: int, end_halo: int) -> list[Window]:
    """Windows of ``window`` feature rows along an axis of ``size`` pixels (see the module docstring)."""
    feat = -(-size // _F)
    if feat <= window:
        return [Window(0, size, 0, feat, (0, feat))]
    step = window - start_halo - end_halo
    if step < 1:
        raise ValueError(f"a {window}-row window leaves no centre after halos of {start_halo} + {end_halo} rows")
    count = 2 + max(0, -(-(feat - 2 * window + start_halo + end_halo) // step))
    bounds = [0] + [window - end_halo + i * step for i in range(count - 1)] + [feat]
    length = size - _F * (feat - window)  # every window has the last one's pixel length
    out = []
    for i in range(count):
        fstart = 0 if i == 0 else (feat - window if i == count - 1 else bounds[i] - start_halo)
        out.append(Window(_F * fstart, length, fstart, window, (bounds[i], bounds[i + 1])))
    return out


def windows(height: int, width: int, tile: int, decode: bool = True) -> list[tuple[Window, Window]]:
    """Every (row, column) window for a ``tile``-pixel tile over a height x width image."""
    check_tile(tile)
    start, end = halo(decode)
    size = tile // _F
    return [(r, c) for r in _axis_windows(height, size, start, end) for c in _axis_windows(width, size, start, end)]


def _crop(array: np.ndarray, rows: Window, cols: Window) -> np.ndarray:
    return array[:, rows.start:rows.start + rows.length, cols.start:cols.start + cols.length]


def _window_masks(fmasks: np.ndarray | None, rows: Window, cols: Window) -> np.ndarray | None:
    if fmasks is None:
        return None
    return fmasks[:, rows.fstart:rows.fstart + rows.flen, cols.fstart:cols.fstart + cols.flen]


def _feature_centre(rows: Window, cols: Window) -> np.ndarray:
    return np.asarray([rows.centre[0] - rows.fstart, rows.centre[1] - rows.fstart,
                       cols.centre[0] - cols.fstart, cols.centre[1] - cols.fstart], np.int32)


# ----------------------------------------------------------------------------------- pass 1


def _relu4_1(encoder_params, window: jax.Array, precision: Precision) -> jax.Array:
    """The window's relu4_1 features, computed in ``precision``, as float32 (statistics stay float32)."""
    feats = networks.encode(encoder_params, window, precision_lib.dtype(precision))
    return feats["relu4_1"].astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("precision",))
def _window_moments(encoder_params, window: jax.Array, centre: jax.Array, fmasks: jax.Array | None,
                    precision: Precision = "float32"):
    """relu4_1 (count, mean, centred sum of squares) of the window's centre -> (N, K), (N, K, C) x 2.

    ``centre``: [row0, row1, col0, col1] on the window's feature grid (traced, so one program
    serves every window); ``fmasks``: (N, h, w, K) region weights or None (K = 1).
    """
    feat = _relu4_1(encoder_params, window, precision)
    n, h, w, _ = feat.shape
    rows, cols = jnp.arange(h), jnp.arange(w)
    inside = (((rows >= centre[0]) & (rows < centre[1]))[:, None]
              & ((cols >= centre[2]) & (cols < centre[3]))[None, :]).astype(jnp.float32)
    inside = inside[None, :, :, None]
    weights = jnp.broadcast_to(inside, (n, h, w, 1)) if fmasks is None else inside * fmasks
    counts, means, squares = [], [], []
    for k in range(weights.shape[-1]):
        count, mean, square = ops.masked_sums(feat, weights[..., k:k + 1])
        counts.append(count[:, 0])
        means.append(mean)
        squares.append(square)
    return jnp.stack(counts, 1), jnp.stack(means, 1), jnp.stack(squares, 1)


def _combine(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], eps: float = ops.EPS):
    """Per-window (count, mean, M2) -> the whole grid's mean and unbiased std (+eps), float64 on the host."""
    counts = np.stack([np.asarray(c, np.float64) for c, _, _ in parts])[..., None]  # (T, N, K, 1)
    means = np.stack([np.asarray(m, np.float64) for _, m, _ in parts])  # (T, N, K, C)
    squares = np.stack([np.asarray(s, np.float64) for _, _, s in parts])
    total = counts.sum(0)
    mean = (counts * means).sum(0) / np.maximum(total, 1.0)
    m2 = squares.sum(0) + (counts * np.square(means - mean)).sum(0)
    var = np.where(total > 1.0, m2 / np.maximum(total - 1.0, 1.0), 0.0)
    return mean.astype(np.float32), np.sqrt(var + eps).astype(np.float32)


def moments_tiled(encoder_params, images: np.ndarray, tile: int, fmasks: np.ndarray | None = None,
                  progress: bool = False, precision: Precision = "float32"):
    """Exact relu4_1 moments of (N, H, W, 3) images, encoded tile by tile -> (N, K, C) mean and std.

    ``fmasks``: (N, h, w, K) region weights on the whole image's feature grid (K = 1 without).
    """
    parts = []
    for rows, cols in _progress(windows(images.shape[1], images.shape[2], tile, decode=False), progress, "statistics"):
        fm = _window_masks(fmasks, rows, cols)
        parts.append(jax.device_get(_window_moments(encoder_params, _crop(images, rows, cols),
                                                    _feature_centre(rows, cols), fm, precision=precision)))
    return _combine(parts)


# ----------------------------------------------------------------------------------- pass 2


@functools.partial(jax.jit, static_argnames=("precision",))
def _window_stylize(weights, window, content_mean, content_std, style_mean, style_std, alpha,
                    style_weights, fmasks, precision: Precision = "float32"):
    """Decoded, clipped window with AdaIN from the whole image's statistics (all (N, K, C))."""
    feat = _relu4_1(weights["encoder"], window, precision)
    target = transfer.adain_target(feat, style_mean, style_std, style_weights=style_weights, fmasks=fmasks,
                                   content_stats=(content_mean, content_std))
    out = networks.decode(weights["decoder"], transfer.blend(alpha, target, feat), precision_lib.dtype(precision))
    return jnp.clip(out, 0.0, 1.0)


def _progress(items: list, enabled: bool, desc: str) -> Iterator:
    if not enabled or len(items) < 2:
        return iter(items)
    import sys

    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, unit="tile", file=sys.stderr, leave=False, disable=None))


# ------------------------------------------------------------------------ colour preservation


def colour_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The target side of `ops.coral` (`ops.coral_to_stats`'s statistics) for (N, H, W, 3) images,
    exact in float64 over row chunks, so a large content needs no float64 copy of itself.

    -> mean (N, 1, 3), unbiased std (N, 1, 3), covariance of the standardised pixels summed plus the
    identity (N, 3, 3). Two passes (mean, then centred products), so no cancellation.
    """
    n, h, w, _ = images.shape
    count = h * w
    total = np.zeros((n, 3))
    for r in range(0, h, _ROW_CHUNK):
        total += images[:, r:r + _ROW_CHUNK].astype(np.float64).sum(axis=(1, 2))
    mean = total / count
    cross = np.zeros((n, 3, 3))
    for r in range(0, h, _ROW_CHUNK):
        d = images[:, r:r + _ROW_CHUNK].astype(np.float64).reshape(n, -1, 3) - mean[:, None]
        cross += np.einsum("npi,npj->nij", d, d)
    std = np.sqrt(np.diagonal(cross, axis1=1, axis2=2) / (count - 1))  # (N, 3)
    cov = cross / (std[:, :, None] * std[:, None, :]) + np.eye(3)
    return mean[:, None].astype(np.float32), std[:, None].astype(np.float32), cov.astype(np.float32)


# ------------------------------------------------------------------------------- public API


def stylize_tiled_with_moments(weights: networks.Weights, content: np.ndarray, style_mean, style_std, *,
                               tile: int, alpha: controls.Alpha = 1.0,
                               style_weights: controls.StyleWeights | None = None, masks: controls.Masks | None = None,
                               out: np.ndarray | None = None, progress: bool = False,
                               precision: Precision = "float32") -> np.ndarray:
    """`transfer.stylize_with_moments`, computed tile by tile; style statistics as there, or (N, K, C).

    Returns (N, H, W, 3) float32 in [0, 1] (written into ``out`` if given, e.g. an ``np.memmap``).
    """
    content = np.asarray(content, np.float32)
    transfer.check_images("content", content)
    controls.check_exclusive(style_weights, masks)
    check_tile(tile)
    vgg_content = variants.normalize_input(content, check_variant(weights))  # what the encoder sees
    n, h, w, _ = content.shape
    style_mean, style_std = np.asarray(style_mean, np.float32), np.asarray(style_std, np.float32)
    if style_mean.ndim == 2:  # the layouts of stylize_with_moments
        multi = style_weights is not None or masks is not None
        axis = 0 if multi else 1
        style_mean, style_std = np.expand_dims(style_mean, axis), np.expand_dims(style_std, axis)
    controls.check_style_batch("style statistics", style_mean.shape[0], n)
    k = style_mean.shape[1]
    style_mean = np.broadcast_to(style_mean, (n, *style_mean.shape[1:]))
    style_std = np.broadcast_to(style_std, (n, *style_std.shape[1:]))
    grid = (-(-h // _F), -(-w // _F))  # the whole image's feature grid
    fmasks = None if masks is None else controls.region_masks(np.asarray(masks), k, content.shape, grid)

    content_mean, content_std = moments_tiled(weights["encoder"], vgg_content, tile, fmasks, progress, precision)
    if out is None:
        out = np.empty((n, h, w, 3), np.float32)
    for rows, cols in _progress(windows(h, w, tile), progress, "stylizing"):
        fm = _window_masks(fmasks, rows, cols)
        decoded = _window_stylize(weights, _crop(vgg_content, rows, cols), content_mean, content_std, style_mean,
                                  style_std, alpha, style_weights, fm, precision=precision)
        r0, r1 = _F * rows.centre[0], min(_F * rows.centre[1], h)
        c0, c1 = _F * cols.centre[0], min(_F * cols.centre[1], w)
        # Sliced on the host: slicing the device array would compile a program per centre shape.
        out[:, r0:r1, c0:c1] = np.asarray(decoded)[:, r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start]
    return out


def stylize_tiled(weights: networks.Weights, content: np.ndarray, style: np.ndarray, *, tile: int,
                  alpha: controls.Alpha = 1.0, style_weights: controls.StyleWeights | None = None,
                  preserve_color: bool = False, masks: controls.Masks | None = None,
                  out: np.ndarray | None = None, progress: bool = False,
                  precision: Precision = "float32") -> np.ndarray:
    """`transfer.stylize` with every control, in memory bounded by ``tile`` (pixels, a window's side).

    Equal to `stylize` up to float rounding (|diff| <= 1e-4 on [0, 1]). Style images larger than the
    tile are encoded tile by tile too. Returns a host (N, H, W, 3) float32 array (or fills ``out``).
    """
    content = np.asarray(content, np.float32)
    style = np.asarray(style, np.float32)
    check_tile(tile)
    variant = check_variant(weights)
    n = content.shape[0]
    multi = style_weights is not None or masks is not None
    transfer.check_images("style", style, batch=None if multi else n)
    k = style.shape[0] if multi else 1
    if preserve_color:  # every (content, style) pair is its own style image, as in `stylize`
        styles, _ = controls.paired_styles(style, n, multi)
        t_mean, t_std, t_cov = (np.repeat(a, k, axis=0) for a in colour_stats(content))
        style = np.asarray(_coral_to_stats(styles, t_mean, t_std, t_cov))
    if style.shape[1] * style.shape[2] > tile * tile:
        mean, std = moments_tiled(weights["encoder"], variants.normalize_input(style, variant), tile,
                                  precision=precision)
        mean, std = mean[:, 0], std[:, 0]
    else:
        mean, std = jax.device_get(transfer.style_moments(weights, style, precision=precision))
    if preserve_color:
        mean, std = mean.reshape(n, k, -1), std.reshape(n, k, -1)
    elif multi:
        mean, std = mean[None], std[None]
    else:
        mean, std = mean[:, None], std[:, None]
    return stylize_tiled_with_moments(weights, content, mean, std, tile=tile, alpha=alpha,
                                      style_weights=style_weights, masks=masks, out=out, progress=progress,
                                      precision=precision)


# --------------------------------------------------------------------------------- --tile auto

# Peak bytes per content pixel of one untiled `stylize` call on XLA:CPU (float32). XLA's own
# figure, `jax.jit(...).lower(...).compile().memory_analysis().temp_size_in_bytes`, is 647 B/px at
# 1024^2 and 546 B/px at 2048^2 with a 512^2 style (the 64-channel full-resolution activations of
# the encoder's and decoder's first level, two at a time); rounded up for the input and output
# arrays, host copies and the allocator. benchmarks/tiling.py measures the real peaks.
BYTES_PER_PIXEL = 768
_BUDGET_FRACTION = 0.6  # of the available memory; the rest is for the input, output and other work


def available_bytes(device: jax.Device | None = None) -> int:
    """Memory one stylization may use: free device memory on an accelerator, available RAM on the CPU."""
    device = device or jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def auto_tile(batch: int, height: int, width: int, budget: int | None = None) -> int:
    """0 when the untiled run fits ``budget`` bytes (default: `available_bytes` x 0.6), else a tile
    (a multiple of 8, at least `min_tile`) whose windows fit.

    Among the tiles that fit, the smallest one that needs no more windows than the largest is
    taken: the windows then overlap as little as they can (a 4096^2 image in 2 x 2 windows of
    ~2100 px rather than of the largest size that fits, which would compute 2.6x its pixels).
    """
    budget = int((available_bytes() if budget is None else budget) * (_BUDGET_FRACTION if budget is None else 1.0))
    if batch * height * width * BYTES_PER_PIXEL <= budget:
        return 0
    side = int(math.sqrt(max(budget, 0) / (batch * BYTES_PER_PIXEL)))
    side = max(min_tile(), side - side % _F)

    start, end = halo(True)

    def count(tile):  # per axis: the 2-D list of a tiny tile over a huge image would be millions long
        return tuple(len(_axis_windows(size, tile // _F, start, end)) for size in (height, width))

    best = count(side)
    while side - _F >= min_tile() and count(side - _F) == best:
        side -= _F
    return side
