"""Exponential moving averages kept while training: the generator's weights (sampled from) and w.

Both are ``decay * old + (1 - decay) * new``; NVlabs keeps Gs with decay 0.5 ** (32 / 10k images)
and dlatent_avg with decay 0.995.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema(ema_params, params, decay):
    """Leafwise ``decay * ema + (1 - decay) * params``."""
    return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_params, params)


def init_w_avg(cfg) -> jax.Array:
    """The tracked mean w before any batch: zeros of (latent_dim,)."""
    return jnp.zeros((cfg.latent_dim,), jnp.float32)


def update_w_avg(w_avg: jax.Array, w: jax.Array, decay) -> jax.Array:
    """Move the tracked mean w towards this batch's mean of w ((N, latent_dim) or (N, L, latent_dim))."""
    batch = jnp.mean(w.reshape(-1, w.shape[-1]), axis=0)
    return decay * w_avg + (1 - decay) * batch
