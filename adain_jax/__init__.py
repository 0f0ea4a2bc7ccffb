"""adain-jax: AdaIN arbitrary style transfer (Huang & Belongie, ICCV 2017) in JAX/Flax.

    weights = adain_jax.load_weights("weights/")           # converter output or training workdir
    out = adain_jax.stylize(weights, content, style, alpha=0.8)   # NHWC float32 in [0, 1]

Numerically identical to the PyTorch port (naoto0804/pytorch-AdaIN); see the README for the few
documented differences from the Lua original.
"""

from adain_jax.ops import adain, coral, moments
from adain_jax.networks import Decoder, Encoder, decode, encode, init_weights
from adain_jax.transfer import stylize, stylize_with_moments, style_moments
from adain_jax.weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "Decoder", "Encoder", "adain", "coral", "decode", "encode", "init_weights", "load_weights",
    "moments", "save_weights", "style_moments", "stylize", "stylize_with_moments",
]
