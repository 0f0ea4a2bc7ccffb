"""The synthesis network g: a learned 4x4 constant (or a dense "traditional input") grown to the
output resolution, with per-layer noise, bias, leaky ReLU and an AdaIN style from that layer's w.

Per resolution r (4, 8, ..., R) there are two style layers. Layer 0 is the input at 4x4; layer 1 a
3x3 conv; at every later resolution the first layer is nearest 2x upsampling, a 3x3 conv and the
[1,2,1] blur (together: bilinear upsampling, StyleGAN's row B), the second a 3x3 conv. Each layer
ends in StyleGAN's epilogue: + noise * learned per-channel strength, + bias, leaky ReLU 0.2, then
`style_adain` (or pixel norm with ``use_styles=False``, the progressive-GAN baseline). A 1x1 toRGB
conv (gain 1) gives NHWC images, roughly in [-1, 1]. No progressive growing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.model import ops
from adain_jax.stylegan import layers
from adain_jax.stylegan.config import GeneratorConfig, features, num_style_layers


def layer_resolution(layer: int) -> int:
    """The side of style layer ``layer``'s features: 4 for layers 0-1, 8 for 2-3, ..."""
    return 4 * 2 ** (layer // 2)


def style_adain(x: jax.Array, y_s: jax.Array, y_b: jax.Array) -> jax.Array:
    """StyleGAN's AdaIN(x, y) = y_s * (x - mean(x)) / std(x) + y_b, per image and channel.

    This is the project's style-transfer `adain_jax.model.ops.adain` with the style statistics
    replaced by learned ones: there ``AdaIN(x, s) = std(s) * (x - mean(x)) / std(x) + mean(s)``
    takes the mean and std of a style image's features; here the style is a learned affine map of
    w, whose scale half ``y_s`` plays ``style_std`` and whose bias half ``y_b`` plays
    ``style_mean``. StyleGAN initialises the scale's bias to 1 so that a fresh layer starts as
    plain instance norm (``init_synthesis`` does the same: y_s = 1 + A_s w at init).

    The variance is the port's (`ops.moments`): unbiased over the H*W positions, + 1e-5 inside the
    square root; StyleGAN's instance norm uses the biased variance + 1e-8. Reusing `ops.moments`
    keeps one owner of the statistics, and the difference is immaterial for a network trained this
    way: the unbiased std is the biased one times the constant sqrt(n / (n - 1)) per layer (1.03 at
    4x4), which the learned y_s absorbs, and the eps only matters for channels that are constant
    over the image, where both keep the output finite. (To load NVlabs weights bit-faithfully one
    would need a biased option in `ops.moments`; nothing here does that.)
    """
    return ops.adain(x, style_mean=y_b, style_std=y_s)


def init_synthesis(rng: np.random.Generator, cfg: GeneratorConfig) -> dict:
    """``{"input": ..., "layer0": ..., ..., "to_rgb": ...}``: see the module docstring."""
    c4 = features(cfg, 4)
    params: dict = {}
    if cfg.const_input:
        params["input"] = {"const": np.ones((1, 4, 4, c4), np.float32)}  # StyleGAN initialises it to ones
    else:
        params["input"] = {"dense": layers.init_dense(rng, cfg.latent_dim, 16 * c4)}
    c_prev = c4
    for layer in range(num_style_layers(cfg)):
        c = features(cfg, layer_resolution(layer))
        lp: dict = {}
        if layer > 0:
            lp["conv"] = layers.init_conv(rng, 3, c_prev, c, bias=False)
        if cfg.use_noise:
            lp["noise_strength"] = np.zeros((c,), np.float32)  # StyleGAN: zero, so noise is learned in
        lp["bias"] = np.zeros((c,), np.float32)
        if cfg.use_styles:
            style = layers.init_dense(rng, cfg.latent_dim, 2 * c)
            style["b"][:c] = 1.0  # y_s starts at 1 (see style_adain)
            lp["style"] = style
        params[f"layer{layer}"] = lp
        c_prev = c
    params["to_rgb"] = layers.init_conv(rng, 1, c_prev, cfg.channels)
    return params


def _is_batch_of_keys(key) -> bool:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


def draw_noise(cfg: GeneratorConfig, noise_key, n: int) -> list[jax.Array]:
    """The per-layer noise images, (n, r, r, 1) standard normal each.

    ``noise_key`` is one key (the whole batch's noise from it) or a batch of n keys (each image's
    noise from its own key, so an image does not depend on what else is in the batch: what
    `adain-jax generate` uses to make seed s give the same picture in any batch).
    """
    sides = [layer_resolution(layer) for layer in range(num_style_layers(cfg))]
    total = sum(side * side for side in sides)
    # One draw for all layers, then sliced: each random.normal call is a separate threefry program,
    # and those dominated the compile time.
    if _is_batch_of_keys(noise_key):
        flat = jax.vmap(lambda k: jax.random.normal(k, (total,), jnp.float32))(noise_key)
    else:
        flat = jax.random.normal(noise_key, (n, total), jnp.float32)
    offsets = np.cumsum([0] + [side * side for side in sides])
    return [flat[:, offsets[i]:offsets[i + 1]].reshape(-1, side, side, 1) for i, side in enumerate(sides)]


def _epilogue(lp: dict, cfg: GeneratorConfig, x: jax.Array, w: jax.Array, noise) -> jax.Array:
    if cfg.use_noise:
        x = x + noise * lp["noise_strength"]
    x = layers.leaky_relu(x + lp["bias"])
    if not cfg.use_styles:
        return layers.pixel_norm(x)
    c = x.shape[-1]
    style = layers.dense(lp["style"], w, gain=1.0)
    return style_adain(x, style[:, :c], style[:, c:])


@functools.partial(jax.jit, static_argnames=("cfg",))
def synthesis(g_params: dict, cfg: GeneratorConfig, ws: jax.Array, noise_key) -> jax.Array:
    """(N, L, latent_dim) ws -> (N, R, R, channels) images, jitted (cfg static).

    Noise comes from ``noise_key`` (one key, or one per image: `draw_noise`); it is ignored with
    ``use_noise=False``.
    """
    params = g_params["synthesis"]
    ws = ws.astype(jnp.float32)
    n, count = ws.shape[0], num_style_layers(cfg)
    if ws.shape[1:] != (count, cfg.latent_dim):
        raise ValueError(f"ws must be (N, {count}, {cfg.latent_dim}) for this config, got {ws.shape}")
    noise = draw_noise(cfg, noise_key, n) if cfg.use_noise else [None] * count
    c4 = features(cfg, 4)
    if cfg.const_input:
        x = jnp.broadcast_to(params["input"]["const"], (n, 4, 4, c4))
    else:
        # The traditional input of NVlabs' G_synthesis (const_input=False): dense from layer 0's w, gain/4.
        x = layers.dense(params["input"]["dense"], ws[:, 0], gain=layers.GAIN / 4).reshape(n, 4, 4, c4)
    x = _epilogue(params["layer0"], cfg, x, ws[:, 0], noise[0])
    for layer in range(1, count):
        lp = params[f"layer{layer}"]
        if layer % 2 == 0:  # a new resolution: bilinear upsampling around the conv
            x = layers.blur(layers.conv(lp["conv"], layers.upsample_nearest(x)))
        else:
            x = layers.conv(lp["conv"], x)
        x = _epilogue(lp, cfg, x, ws[:, layer], noise[layer])
    return layers.conv(params["to_rgb"], x, gain=1.0)

