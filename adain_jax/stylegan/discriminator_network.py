"""The discriminator: the synthesis network's mirror, images (N, R, R, C) in [-1, 1] -> logits (N,).

fromRGB (1x1 conv), then per resolution R, R/2, ..., 8: a 3x3 conv and a blur + 3x3 conv + 2x2
average pool (bilinear downsampling, StyleGAN's row B), leaky ReLU 0.2 after each; at 4x4 the
minibatch standard deviation feature, a 3x3 conv, a dense layer and the dense logit (gain 1). All
layers use the equalised learning rate.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.stylegan import layers
from adain_jax.stylegan.config import DiscriminatorConfig, features, resolutions


def init_discriminator(dcfg: DiscriminatorConfig, seed: int) -> dict:
    """``{"from_rgb", "block<R>", ..., "block8", "block4"}`` of float32 arrays, numpy-seeded."""
    rng = np.random.default_rng([seed, 2])
    res = resolutions(dcfg)[::-1]  # R, ..., 4
    params = {"from_rgb": layers.init_conv(rng, 1, dcfg.channels, features(dcfg, res[0]))}
    for r in res[:-1]:
        c, c_next = features(dcfg, r), features(dcfg, r // 2)
        params[f"block{r}"] = {"conv0": layers.init_conv(rng, 3, c, c), "conv1": layers.init_conv(rng, 3, c, c_next)}
    c4 = features(dcfg, 4)
    params["block4"] = {"conv": layers.init_conv(rng, 3, c4 + 1, c4),
                        "dense": layers.init_dense(rng, 16 * c4, c4),
                        "logit": layers.init_dense(rng, c4, 1)}
    return jax.tree.map(jnp.asarray, params)


def _group_size(n: int, group: int) -> int:
    g = max(1, min(group, n))
    while n % g:  # the largest group size <= mbstd_group that divides the batch
        g -= 1
    return g


def minibatch_stddev(x: jax.Array, group: int) -> jax.Array:
    """Append one feature map: the std over each group of images, averaged over positions and channels.

    As StyleGAN, images i and i + n/G belong to one group (the batch is reshaped to (G, n/G, ...)).
    """
    n, h, w, _ = x.shape
    g = _group_size(n, group)
    y = x.reshape(g, n // g, h, w, -1)
    y = y - jnp.mean(y, axis=0)
    std = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # (n/G, h, w, c)
    stat = jnp.mean(std, axis=(1, 2, 3))  # (n/G,)
    stat = jnp.tile(stat, g)  # image i gets its group's value, i = k * n/G + m
    return jnp.concatenate([x, jnp.broadcast_to(stat[:, None, None, None], (n, h, w, 1)).astype(x.dtype)], axis=-1)


def discriminator_fn(d_params: dict, dcfg: DiscriminatorConfig, images: jax.Array) -> jax.Array:
    """Unjitted `discriminator` (for use inside a caller's own transformations)."""
    if images.shape[1:] != (dcfg.resolution, dcfg.resolution, dcfg.channels):
        raise ValueError(f"images must be (N, {dcfg.resolution}, {dcfg.resolution}, {dcfg.channels}), "
                         f"got {images.shape}")
    x = layers.leaky_relu(layers.conv(d_params["from_rgb"], images.astype(jnp.float32)))
    for r in resolutions(dcfg)[:0:-1]:  # R, ..., 8
        block = d_params[f"block{r}"]
        x = layers.leaky_relu(layers.conv(block["conv0"], x))
        x = layers.leaky_relu(layers.downsample_average(layers.conv(block["conv1"], layers.blur(x))))
    block = d_params["block4"]
    x = minibatch_stddev(x, dcfg.mbstd_group)
    x = layers.leaky_relu(layers.conv(block["conv"], x))
    x = layers.leaky_relu(layers.dense(block["dense"], x.reshape(x.shape[0], -1)))
    return layers.dense(block["logit"], x, gain=1.0)[:, 0]


discriminator = functools.partial(jax.jit, static_argnames=("dcfg",))(discriminator_fn)
