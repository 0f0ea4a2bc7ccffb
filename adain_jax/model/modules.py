"""The encoder and decoder as Flax linen modules, for code that composes Flax modules.

They declare the same params tree as the converter writes (``{layer: {"kernel", "bias"}}``, one
level per layer) and compute exactly `adain_jax.model.networks.encode` / `decode`, which the rest
of the library calls directly. Their ``init`` draws the distribution `networks.init_weights` draws
(`adain_jax.model.initialisation` says why not the same numbers).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from adain_jax.model import architecture, initialisation, networks, variants


class LayerParams(nn.Module):
    """Declares one layer's ``kernel`` and ``bias`` and returns them, initialised as `init_weights`
    initialises them (`initialisation.flax_initializers`; ``last``: the decoder's output layer)."""

    spec: architecture.ConvSpec
    last: bool = False

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        kernel_init, bias_init = initialisation.flax_initializers(self.spec, self.last)
        return {"kernel": self.param("kernel", kernel_init, self.spec.flax_kernel_shape),
                "bias": self.param("bias", bias_init, (self.spec.out_channels,))}


def _params(specs, output_layer: bool = False) -> dict[str, dict[str, jax.Array]]:
    """``output_layer``: the last spec is the decoder's output layer."""
    return {spec.name: LayerParams(spec, last=output_layer and i == len(specs) - 1, name=spec.name)()
            for i, spec in enumerate(specs)}


class Encoder(nn.Module):
    """Normalised VGG-19 up to relu4_1; returns {relu1_1, relu2_1, relu3_1, relu4_1}."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        return networks.encode(_params(architecture.ENCODER), images, self.dtype)


class Decoder(nn.Module):
    """relu4_1 features -> RGB image (no output activation, so values may leave [0, 1]).

    ``variant``: a decoder of the MVA study (`adain_jax.model.variants`); with skip connections,
    call it with ``skips`` (`variants.skip_features`).
    """

    dtype: Any = jnp.float32
    variant: variants.DecoderVariant = variants.PLAIN

    @nn.compact
    def __call__(self, features: jax.Array, skips: dict[str, jax.Array] | None = None) -> jax.Array:
        return networks.decode(_params(variants.decoder_specs(self.variant), output_layer=True), features, self.dtype,
                               variant=self.variant, skips=skips)
