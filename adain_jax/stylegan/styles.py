"""Per-layer ws: broadcasting w, style mixing and the truncation trick, all as masks over layers.

Everything takes the crossover / psi / cutoff as traced values and selects layers with
``jnp.where(layer_index < k, a, b)`` (NVlabs' ``tf.where(layer_idx < cutoff, ...)``), so one
compiled program serves every crossover point and truncation setting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from adain_jax.stylegan.config import GeneratorConfig, num_style_layers


def broadcast_w(w: jax.Array, cfg: GeneratorConfig) -> jax.Array:
    """(N, latent_dim) -> (N, L, latent_dim): the same w for every style layer."""
    return jnp.broadcast_to(w[:, None, :], (w.shape[0], num_style_layers(cfg), w.shape[-1]))


def _layer_mask(ws: jax.Array, k) -> jax.Array:
    """(N or 1, L, 1) booleans: layer index < k, with k a scalar or one per image."""
    k = jnp.reshape(jnp.asarray(k), (-1, 1))
    return (jnp.arange(ws.shape[1])[None, :] < k)[..., None]


def mix(ws1: jax.Array, ws2: jax.Array, crossover) -> jax.Array:
    """Style mixing: layers < crossover from ws1, the rest from ws2 (crossover scalar or (N,)).

    Crossover 0 gives ws2, crossover L gives ws1. The coarse styles (4x4-8x8) are the first layers.
    """
    return jnp.where(_layer_mask(ws1, crossover), ws1, ws2)


def truncate(ws: jax.Array, w_avg: jax.Array, psi, cutoff) -> jax.Array:
    """The truncation trick: layers < cutoff become ``w_avg + psi * (w - w_avg)``.

    Written as ``psi * w + (1 - psi) * w_avg`` so that psi = 1 returns ws and psi = 0 returns
    w_avg exactly. ``psi`` is a scalar or one per image; ``cutoff`` a scalar or one per image.
    """
    psi = jnp.reshape(jnp.asarray(psi, ws.dtype), (-1, 1, 1))
    pulled = psi * ws + (1 - psi) * w_avg
    return jnp.where(_layer_mask(ws, cutoff), pulled, ws)
