"""Serialized StableHLO: `jax.export` of the exported functions, weights embedded as constants.

The bytes are ``jax.export.Exported.serialize()``: a fresh process needs only JAX (not adain_jax) to
call them, on any platform in `PLATFORMS`, for any batch and any height and width >= 9:

    from jax import export
    stylize = export.deserialize(open("exported/stylize.stablehlo", "rb").read())
    image = stylize.call(content, style, np.float32(0.8))   # NHWC float32 in [0, 1]

`Exported.call` checks the shapes against the symbolic ones and their constraints, so a wrong
rank, a channel count other than 3 or an image smaller than 9 pixels raises before running. JAX
guarantees that a serialization can be deserialized by JAX releases for at least six months after it
was made (its export compatibility window).
"""

from __future__ import annotations

import jax
from jax import export as jax_export

from adain_jax.export import graph
from adain_jax.model import variants

# Lowered once per platform into the one artifact; only CPU is exercised by the test suite.
PLATFORMS = ("cpu", "cuda", "tpu")


def export(weights, name: str) -> jax_export.Exported:
    """The `jax.export.Exported` of function ``name`` (one of `graph.FUNCTIONS`) with ``weights``."""
    variants.require_plain(weights, "export")
    fn = jax.jit(graph.bind(weights, name))
    return jax_export.export(fn, platforms=PLATFORMS)(*graph.input_specs(name))


def export_bytes(weights, name: str) -> bytes:
    return bytes(export(weights, name).serialize())


def load(path) -> jax_export.Exported:
    """Deserialize an artifact written by `export_bytes` (``.call(*args)`` runs it)."""
    with open(path, "rb") as f:
        return jax_export.deserialize(bytearray(f.read()))
