"""A style-based generator (StyleGAN, Karras, Laine & Aila, CVPR 2019) on the project's AdaIN.

    from adain_jax import stylegan as sg
    cfg = sg.GeneratorConfig(resolution=16, channels=1)
    g = sg.init_generator(cfg, seed=0)
    images = sg.generate(g, cfg, z, jax.random.key(0), w_avg=w_avg, psi=0.7, cutoff=4)

Modules, lowest first: ``config`` (configs, layer plan), ``layers`` (equalised-lr layers, blur,
resampling, pixel norm), ``mapping_network``, ``synthesis_network`` (per-layer AdaIN styles
from `adain_jax.model.ops.adain`), ``styles`` (broadcast, mixing, truncation as masks),
``generator`` (init, jitted `generate`), ``discriminator_network``, ``objectives`` (losses, R1), ``averages`` (EMA,
w_avg), ``checkpoint`` (save / load the sampling generator), ``pictures`` (mixing grid,
truncation sweep, noise study). The names below are the contract with the training code
(train/); the modules are not named like the functions, so ``sg.mapping`` is always the
function. They load on first use so importing the package is cheap.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "GeneratorConfig": "config", "DiscriminatorConfig": "config", "num_style_layers": "config",
    "features": "config",
    "init_generator": "generator", "generate": "generator",
    "mapping": "mapping_network", "synthesis": "synthesis_network", "draw_noise": "synthesis_network",
    "style_adain": "synthesis_network",
    "broadcast_w": "styles", "mix": "styles", "truncate": "styles",
    "init_discriminator": "discriminator_network", "discriminator": "discriminator_network",
    "discriminator_fn": "discriminator_network",
    "generator_loss": "objectives", "discriminator_loss": "objectives", "r1_penalty": "objectives",
    "ema": "averages", "update_w_avg": "averages", "init_w_avg": "averages",
    "save_generator": "checkpoint", "load_generator": "checkpoint", "generator_steps": "checkpoint",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"adain_jax.stylegan.{_PUBLIC[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adain_jax.stylegan' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
