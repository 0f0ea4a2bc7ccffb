"""Style augmentation inside other people's jitted, sharded train steps: `style_augment`.

``style_augment(key, images, source, weights=...)`` stylizes a random subset of a batch with the frozen
AdaIN encoder and decoder and returns a batch of the same shape, dtype and sharding. It is written for
a step that is already one ``jax.jit`` program over a batch-sharded mesh:

- static shapes: every image is stylized and a per-sample mask selects (``jnp.where``), so the
  program does not depend on the draw (the price: a whole batch's stylization every step; the
  ``resolution`` option makes it cheaper);
- an explicit PRNG key, so a step is deterministic for its key and different keys give different
  draws; the random arrays are drawn per sample, which JAX's partitionable threefry does on each
  device without communication;
- no cross-device gather of images: each image is stylized where it lives. Only an `InBatch` source
  moves data between devices, the (N, 512) moments of the partners, never pixels;
- ``jax.lax.stop_gradient`` on the stylized part: the frozen networks get no gradient and a
  stylized sample passes none to its input; the unselected samples pass theirs unchanged;
- labels are untouched: the function sees only images.

The styles come from `StyleBank`, `GaussianStyles` or `InBatch` (`adain_jax.augment.sources`);
``python -m adain_jax.augment bank`` writes a bank from a folder. The feature-level layers MixStyle,
DSU and EFDMix, for a user's own backbone, are in `adain_jax.model.feature_stats`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from adain_jax import controls, transfer, typed_jit
from adain_jax import precision as precision_lib
from adain_jax.augment.sources import GaussianStyles, InBatch, Source, StyleBank
from adain_jax.model import ops, variants
from adain_jax.model.variants import Weights
from adain_jax.precision import Precision

__all__ = ["GaussianStyles", "InBatch", "Source", "StyleBank", "style_augment"]

AlphaRange = float | tuple[float, float]


def reduced_size(height: int, width: int, resolution: int | None) -> tuple[int, int]:
    """The size stylized at: the shorter side ``resolution`` (aspect kept), never larger than the image."""
    if resolution is None or resolution >= min(height, width):
        return height, width
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    scale = resolution / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def alpha_range(alpha: AlphaRange) -> tuple[ArrayLike, ArrayLike]:
    """``alpha`` as a (low, high) range; a number is the range of one value, so that a fixed alpha and a
    range are one compiled program."""
    if isinstance(alpha, (tuple, list)):
        if len(alpha) != 2:
            raise ValueError(f"alpha must be a number or a (low, high) range, got {alpha!r}")
        return alpha[0], alpha[1]
    return alpha, alpha


def style_augment(key: jax.Array, images: ArrayLike, source: Source, *, weights: Weights,
                  p: float | jax.Array = 0.5, alpha: AlphaRange = (0.5, 1.0), share: int | None = None,
                  resolution: int | None = None, precision: Precision = "float32") -> jax.Array:
    """Stylize a random subset of an NHWC batch in [0, 1]; returns the batch, same shape and dtype.

    Args:
      key: a JAX PRNG key; the same key gives the same result.
      images: (N, H, W, 3) float images in [0, 1] (float32 or bfloat16).
      source: `StyleBank`, `GaussianStyles` or `InBatch` (a pytree: pass it as an argument of the step).
      weights: the frozen AdaIN model (`adain_jax.load_weights`); a decoder variant that takes the style
        images' features cannot be driven by moments and is refused.
      p: probability that a sample is stylized, drawn per sample (per group with ``share``). 0.5 by
        default, the feature-level layers' p (`adain_jax.model.feature_stats`).
      alpha: the AdaIN strength, a number or a ``(low, high)`` range drawn uniformly per sample;
        ``(0.5, 1.0)`` by default (our choice: clearly stylized, never the full style only). A sample
        drawn with alpha 0 is returned as it is, not as the decoder's reconstruction of it, so
        ``alpha=0`` (like ``p=0``) returns the input exactly.
      share: a group size g: consecutive groups of g samples (paired views of one image, stacked next
        to each other) share one coin, one alpha and one style. N must be a multiple of g.
      resolution: stylize at this shorter side (aspect kept) and resize the result back bilinearly: about
        (resolution / min(H, W))^2 of the cost, with the content's fine detail lost in stylized samples.
      precision: "float32" or "bfloat16" convolutions (`adain_jax.precision`).
    """
    return _style_augment(key, images, source, weights=weights, p=p, alpha=alpha_range(alpha), share=share,
                          resolution=resolution, precision=precision)


@typed_jit.jit(static_argnames=("share", "resolution", "precision"))
def _style_augment(key: jax.Array, images: ArrayLike, source: Source, *, weights: Weights, p: float | jax.Array,
                   alpha: tuple[ArrayLike, ArrayLike], share: int | None, resolution: int | None,
                   precision: Precision) -> jax.Array:
    """`style_augment`, with alpha as a range (one program for a fixed alpha and a range alike)."""
    images = jnp.asarray(images)
    transfer.check_images("images", images)
    precision_lib.check(precision)
    if variants.of(weights).style_skips:
        raise ValueError(f"this decoder ({variants.of(weights).describe()}) takes the style images' features, "
                         "not only their statistics: style_augment cannot drive it")
    n, height, width, _ = images.shape
    group = 1 if share is None else share
    if group < 1 or n % group:
        raise controls.ControlError(controls.SHAPES, f"share={share} must divide the batch of {n} images")
    groups = n // group
    k_coin, k_alpha, k_style = jax.random.split(key, 3)

    low, high = (jnp.asarray(v, jnp.float32) for v in alpha)
    a = jax.random.uniform(k_alpha, (groups,), jnp.float32, low, high)
    # alpha 0 keeps the sample: a stylization at alpha 0 would still be the decoder's reconstruction.
    chosen = (jax.random.uniform(k_coin, (groups,)) < p) & (a != 0)
    h, w = reduced_size(height, width, resolution)
    content = images.astype(jnp.float32)
    if (h, w) != (height, width):
        content = jax.image.resize(content, (n, h, w, 3), "linear", antialias=True)
    feats = transfer.features(weights, content, precision)
    if isinstance(source, InBatch):
        c_mean, c_std = ops.moments(feats["relu4_1"])
        s_mean, s_std = source.draw(k_style, n, c_mean, c_std, group)
    elif isinstance(source, (StyleBank, GaussianStyles)):
        s_mean, s_std = source.draw(k_style, groups)
    else:
        raise TypeError(f"source must be a StyleBank, GaussianStyles or InBatch, got {type(source).__name__}")

    def per_sample(x: jax.Array) -> jax.Array:
        return jnp.repeat(x, group, axis=0, total_repeat_length=n) if group > 1 else x

    s_mean, s_std, a, chosen = per_sample(s_mean), per_sample(s_std), per_sample(a), per_sample(chosen)
    stylized = transfer._transfer(weights, content, s_mean[:, None], s_std[:, None], a, None, None, precision,
                                  content_feats=feats)
    if (h, w) != (height, width):
        stylized = jnp.clip(jax.image.resize(stylized, (n, height, width, 3), "linear"), 0.0, 1.0)
    stylized = jax.lax.stop_gradient(stylized).astype(images.dtype)
    return jnp.where(chosen[:, None, None, None], stylized, images)
