"""The AdaIN training objective of the PyTorch port (``net.py`` ``Net.forward`` + ``train.py``).

For content images c and style images s (NHWC, float in [0, 1]) and the frozen encoder f:

* the AdaIN target ``t = adain(f(c), f(s))`` at relu4_1 (blended with f(c) by ``alpha``, 1 in training);
* the decoded image ``g(t)`` and its features ``f(g(t))``, without clipping;
* content loss ``mse(f(g(t))_relu4_1, t)``, the mean squared error over every element;
* style loss ``sum over relu1_1..relu4_1 of mse(mean(f(g(t))), mean(f(s))) + mse(std(..), std(..))``
  with the port's per-channel statistics (`adain_jax.model.ops.moments`: unbiased variance + 1e-5);
* ``loss = content_weight * content_loss + style_weight * style_loss`` (train.py: 1 and 10).

Study switches (`adain_jax.model.variants`): a ``variant`` with skips feeds the decoder the
content's and/or style's relu1_1..relu3_1 features, and ``input_norm="imagenet"`` normalises c, s
and g(t) before every VGG pass; ``statistics="batch"`` replaces every *style* statistic (the AdaIN
target's relu4_1 moments and the style loss's targets at every layer) by its pool over the
mini-batch (`ops.pooled_moments`, the batch-norm analogue), while the content's normalisation and
the decoded images' statistics stay per image. So a batch whose styles are all one image trains
exactly as with ``"instance"``. It is a training switch: at inference every style uses its own
statistics (pooled over one style, they are the same).

Only the decoder receives gradients: the encoder parameters are a separate argument that callers
do not differentiate, and ``t`` and the style features do not depend on the decoder.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from adain_jax.model import architecture, networks, ops, variants


def _at_least_f32(x: jax.Array) -> jax.Array:
    """float32 for float32/bfloat16/float16 inputs; float64 stays float64 (x64 parity checks)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """``nn.MSELoss()`` (mean reduction over every element), accumulated in at least float32."""
    return jnp.mean(jnp.square(_at_least_f32(a) - _at_least_f32(b)))


def content_loss(output_feat: jax.Array, target: jax.Array) -> jax.Array:
    """``Net.calc_content_loss``: MSE between relu4_1 of the decoded image and the AdaIN target."""
    return mse(output_feat, target)


def style_loss(output_feats: Mapping[str, jax.Array], style_feats: Mapping[str, jax.Array],
               statistics: str = "instance") -> jax.Array:
    """``Net.calc_style_loss`` summed over relu1_1..relu4_1: MSE of per-channel means plus of stds.

    ``statistics="batch"``: the style side's moments pooled over the batch (`ops.pooled_moments`).
    """
    variants.check_statistics(statistics)
    style_moments = ops.moments if statistics == "instance" else ops.pooled_moments
    terms = []
    for layer in architecture.FEATURE_LAYERS:
        out_mean, out_std = ops.moments(output_feats[layer])
        sty_mean, sty_std = style_moments(style_feats[layer])
        terms += [mse(out_mean, sty_mean), mse(out_std, sty_std)]
    return functools.reduce(operator.add, terms)  # left to right, the port's order: the float sums agree


def adain_loss(decoder_params: Any, encoder_params: Any, content: jax.Array, style: jax.Array, *,
               content_weight: float = 1.0, style_weight: float = 10.0, alpha: float = 1.0,
               dtype: Any = jnp.float32, variant: variants.DecoderVariant | None = None,
               statistics: str = "instance") -> tuple[jax.Array, dict[str, jax.Array]]:
    """The port's weighted training loss -> ``(loss, {"content_loss", "style_loss"})``.

    ``content`` and ``style`` are NHWC float images in [0, 1] with the same batch size (one style per
    content image) and sizes divisible by 8. Differentiate with respect to ``decoder_params`` only,
    e.g. ``jax.value_and_grad(adain_loss, has_aux=True)``. ``dtype`` is the convolutions' compute
    dtype; statistics and losses are computed in float32 (in float64 when ``dtype`` is float64 and
    the `adain_jax.model.ops` statistics keep it, for float64 parity checks). ``variant`` and
    ``statistics``: the study's switches (module docstring); the defaults are the port's objective.
    """
    variants.check_statistics(statistics)
    variant = variant or variants.PLAIN
    vgg_input = functools.partial(variants.normalize_input, variant=variant)
    style_feats = networks.encode(encoder_params, vgg_input(style), dtype=dtype)
    content_feats = networks.encode(encoder_params, vgg_input(content), dtype=dtype)
    content_feat = content_feats["relu4_1"]
    style_moments = ops.moments if statistics == "instance" else ops.pooled_moments
    style_mean, style_std = style_moments(style_feats["relu4_1"])
    content_feat = _at_least_f32(content_feat)
    t = ops.adain(content_feat, style_mean, style_std)
    t = alpha * t + (1 - alpha) * content_feat
    t = jax.lax.stop_gradient(t)  # train.py: the target is a constant (no grad reaches the encoder)
    skips = variants.skip_features(variant, content_feats, style_feats)
    skips = None if skips is None else jax.lax.stop_gradient(skips)
    g_t = networks.decode(decoder_params, t, dtype=dtype, variant=variant, skips=skips)
    g_t_feats = networks.encode(encoder_params, vgg_input(g_t), dtype=dtype)
    loss_c = content_loss(g_t_feats["relu4_1"], t)
    loss_s = style_loss(g_t_feats, style_feats, statistics)
    loss = content_weight * loss_c + style_weight * loss_s
    return loss, {"content_loss": loss_c, "style_loss": loss_s}
