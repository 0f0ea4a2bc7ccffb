"""The whole generator: parameters (mapping + synthesis) and `generate` z -> images.

`generate` maps z (and an optional second latent for style mixing) to w, broadcasts to the L
style layers, mixes at a crossover, truncates towards w_avg, and synthesises. It is jitted with
only the config static: crossover, psi and cutoff are traced, so changing them never recompiles.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.stylegan import styles
from adain_jax.stylegan.config import GeneratorConfig, num_style_layers
from adain_jax.stylegan.mapping_network import init_mapping, mapping
from adain_jax.stylegan.synthesis_network import init_synthesis, synthesis


def init_generator(cfg: GeneratorConfig, seed: int) -> dict:
    """``{"mapping": ..., "synthesis": ...}`` of float32 arrays from numpy seeded with ``seed``.

    The two networks draw from separate streams, so switching the mapping network off (ablation)
    leaves the synthesis initialisation unchanged. ``"mapping"`` is absent with use_mapping=False.
    """
    params = {"synthesis": init_synthesis(np.random.default_rng([seed, 1]), cfg)}
    mapping_params = init_mapping(np.random.default_rng([seed, 0]), cfg)
    if mapping_params:
        params["mapping"] = mapping_params
    return jax.tree.map(jnp.asarray, params)


@functools.partial(jax.jit, static_argnames=("cfg",))
def generate(g_params: dict, cfg: GeneratorConfig, z: jax.Array, noise_key, *, w_avg=None, psi=1.0,
             cutoff=None, mix_z=None, crossover=None) -> jax.Array:
    """z (N, latent_dim) -> images (N, R, R, channels): mapping, mixing, truncation, synthesis.

    With ``mix_z``, layers < ``crossover`` take z's styles and the rest mix_z's. With ``w_avg``, the
    layers < ``cutoff`` (default: all) are truncated with ``psi``. ``noise_key`` is one key or one
    per image (see `synthesis_network.draw_noise`). crossover, psi and cutoff are traced: new values
    reuse the compiled program; only switching an argument between None and a value (or a scalar and
    a per-image array) compiles another.
    """
    ws = styles.broadcast_w(mapping(g_params, cfg, z), cfg)
    if mix_z is not None:
        ws2 = styles.broadcast_w(mapping(g_params, cfg, mix_z), cfg)
        ws = styles.mix(ws, ws2, num_style_layers(cfg) if crossover is None else crossover)
    if w_avg is not None:
        ws = styles.truncate(ws, w_avg, psi, num_style_layers(cfg) if cutoff is None else cutoff)
    return synthesis(g_params, cfg, ws, noise_key)
