"""The mapping network z -> w: pixel norm of z, then fully connected layers with leaky ReLU.

StyleGAN's f: ``mapping_layers`` (8) equalised-lr dense layers of ``latent_dim`` units, each with
leaky ReLU 0.2 and the learning-rate multiplier ``mapping_lr_mul`` (0.01). With
``use_mapping=False`` (ablation) w is the pixel-normalised z.
"""

from __future__ import annotations

import jax
import numpy as np

from adain_jax.stylegan import layers
from adain_jax.stylegan.config import GeneratorConfig


def init_mapping(rng: np.random.Generator, cfg: GeneratorConfig) -> dict:
    """``{"fc0": {"w", "b"}, ...}`` (empty without the mapping network)."""
    if not cfg.use_mapping:
        return {}
    return {f"fc{i}": layers.init_dense(rng, cfg.latent_dim, cfg.latent_dim, lr_mul=cfg.mapping_lr_mul)
            for i in range(cfg.mapping_layers)}


def mapping(g_params: dict, cfg: GeneratorConfig, z: jax.Array) -> jax.Array:
    """(N, latent_dim) z -> (N, latent_dim) w."""
    x = layers.pixel_norm(z.astype("float32"))
    if cfg.use_mapping:
        params = g_params["mapping"]
        for i in range(cfg.mapping_layers):
            x = layers.leaky_relu(layers.dense(params[f"fc{i}"], x, lr_mul=cfg.mapping_lr_mul))
    return x
