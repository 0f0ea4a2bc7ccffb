"""The AdaIN encoder (normalised VGG-19 up to relu4_1) and decoder as Flax linen modules.

Inputs and outputs are NHWC. The params pytree of each network is ``{layer_name: {"kernel": HWIO,
"bias": (O,)}}`` with the names of `adain_jax.architecture`, so converted official weights, trained
weights and freshly initialised ones are interchangeable. The whole model's weights are the dict
``{"encoder": ..., "decoder": ...}``.

Numerics follow the PyTorch port: reflection padding before every 3x3 convolution, 2x2 max-pooling
in ceil mode (a trailing odd row/column forms its own window), nearest 2x upsampling in the
decoder and no activation after its last layer.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from adain_jax import architecture

Params = Mapping[str, Any]
Weights = dict[str, Any]  # {"encoder": Params, "decoder": Params}


class ReflectConv(nn.Module):
    """Reflection-padded 'valid' convolution, the building block of both networks.

    Declares its own ``kernel``/``bias`` rather than wrapping `nn.Conv` so the params tree keeps
    one level per layer (``conv1_1/kernel``), matching the converter's output.
    """

    spec: architecture.ConvSpec
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.he_normal(), self.spec.flax_kernel_shape)
        bias = self.param("bias", nn.initializers.zeros, (self.spec.out_channels,))
        pad = self.spec.kernel_size // 2
        if pad:
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            # Full float32 accumulation: XLA's default may use reduced precision on some backends,
            # which would break parity with the PyTorch reference.
            precision=jax.lax.Precision.HIGHEST if self.dtype == jnp.float32 else None,
        )
        y = y + bias.astype(self.dtype)
        return nn.relu(y) if self.spec.relu else y


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2/2 max-pool in PyTorch's ceil mode: an odd trailing row/column is pooled on its own."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
    return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


class Encoder(nn.Module):
    """Normalised VGG-19 up to relu4_1; returns {relu1_1, relu2_1, relu3_1, relu4_1}."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        x = images
        features = {}
        for spec in architecture.ENCODER:
            x = ReflectConv(spec, dtype=self.dtype, name=spec.name)(x)
            relu_name = "relu" + spec.name[len("conv"):]
            if relu_name in architecture.FEATURE_LAYERS:
                features[relu_name] = x
            if spec.pool_after:
                x = max_pool_ceil(x)
        return features


class Decoder(nn.Module):
    """relu4_1 features -> RGB image (no output activation, so values may leave [0, 1])."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        x = features
        for spec in architecture.DECODER:
            x = ReflectConv(spec, dtype=self.dtype, name=spec.name)(x)
            if spec.upsample_after:
                x = upsample_nearest_2x(x)
        return x.astype(jnp.float32)


def encode(encoder_params: Params, images: jax.Array, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """Encoder features of NHWC images in [0, 1]."""
    return Encoder(dtype=dtype).apply({"params": encoder_params}, images)


def decode(decoder_params: Params, features: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """Decoded NHWC images (8x the feature map's height and width)."""
    return Decoder(dtype=dtype).apply({"params": decoder_params}, features)


def init_weights(rng: jax.Array) -> Weights:
    """Randomly initialised weights of the official shapes (He-normal kernels, zero biases).

    The decoder's last layer is scaled down and biased to 0.5 so that an untrained model's output
    lies mostly inside [0, 1] (a grey texture, not saturated colour), which keeps random-weight
    demos readable and comparisons after clipping meaningful.
    """
    enc_rng, dec_rng = jax.random.split(rng)
    dummy = jnp.zeros((1, 16, 16, 3), jnp.float32)
    encoder = Encoder().init(enc_rng, dummy)["params"]
    decoder = dict(Decoder().init(dec_rng, jnp.zeros((1, 2, 2, 512), jnp.float32))["params"])
    last = architecture.DECODER[-1].name
    decoder[last] = {"kernel": decoder[last]["kernel"] * 0.05, "bias": jnp.full_like(decoder[last]["bias"], 0.5)}
    return {"encoder": dict(encoder), "decoder": decoder}
