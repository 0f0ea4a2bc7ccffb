"""adain-jax: AdaIN arbitrary style transfer (Huang & Belongie, ICCV 2017) in JAX/Flax.

    weights = adain_jax.load_weights("weights/")           # converter output or training workdir
    out = adain_jax.stylize(weights, content, style, alpha=0.8)   # NHWC float32 in [0, 1]

Numerically identical to the PyTorch port (naoto0804/pytorch-AdaIN); see the README for the few
documented differences from the Lua original.

Layers, lowest first (a module imports only from layers below it): ``model`` (layer table,
networks, AdaIN ops, losses) and ``io`` (images, masks, output files, weights directories);
``controls`` (the style controls' rules); ``parallel`` (device mesh); ``transfer`` (the jitted
``stylize``); ``augment`` (style augmentation for other train steps) and ``runner`` (files -> results);
``cli``. The public names below load on first use, so
``import adain_jax`` stays cheap and a command imports only what it needs.
"""

from __future__ import annotations

import importlib

from adain_jax import xla_flags

# First, before anything can start JAX's backend: XLA reads XLA_FLAGS once, when it starts. Every
# entry point (the CLI, training, benchmarks, notebooks) imports adain_jax before JAX computes.
xla_flags.apply()

__version__ = "0.1.0"

_PUBLIC = {
    "adain": "adain_jax.model.ops", "coral": "adain_jax.model.ops", "moments": "adain_jax.model.ops",
    "Decoder": "adain_jax.model.modules", "Encoder": "adain_jax.model.modules",
    "decode": "adain_jax.model.networks", "encode": "adain_jax.model.networks",
    "init_weights": "adain_jax.model.networks",
    "stylize": "adain_jax.transfer", "stylize_with_moments": "adain_jax.transfer",
    "style_moments": "adain_jax.transfer",
    "stylize_sharded": "adain_jax.transfer", "stylize_with_moments_sharded": "adain_jax.transfer",
    "stylize_tiled": "adain_jax.tiling",
    "load_weights": "adain_jax.io.weights", "save_weights": "adain_jax.io.weights",
    "Weights": "adain_jax.model.variants",
    "style_augment": "adain_jax.augment", "StyleBank": "adain_jax.augment",
    "GaussianStyles": "adain_jax.augment", "InBatch": "adain_jax.augment",
    "MixStyle": "adain_jax.model.feature_stats", "DSU": "adain_jax.model.feature_stats",
    "EFDMix": "adain_jax.model.feature_stats",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'adain_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
