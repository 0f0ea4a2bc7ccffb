"""StyleGAN building blocks: equalised-learning-rate dense/conv layers, blur, resampling, pixel norm.

Equalised learning rate (Karras et al. 2018, kept by StyleGAN): every weight is *stored* as
N(0, 1) / lr_mul and multiplied at run time by ``he_std * lr_mul`` with ``he_std = gain /
sqrt(fan_in)``; biases are stored as zeros and multiplied by ``lr_mul``. Adam's update size is then
the same for every layer whatever its fan-in, and ``lr_mul`` (0.01 in the mapping network) slows a
layer down without touching the optimiser. Params are plain dicts ``{"w", "b"}`` of float32 arrays,
created from a numpy Generator so the same seed gives the same values on every host.

Resampling follows StyleGAN's "tuning (incl. bilinear up/down)" row: nearest 2x upsampling followed
(after the convolution) by a normalised [1, 2, 1] x [1, 2, 1] blur is bilinear upsampling; blur then
2x2 average pooling is bilinear downsampling. All arrays are NHWC.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

GAIN = math.sqrt(2.0)  # He gain for leaky ReLU layers; toRGB, style affines and the logit use 1
_DN = ("NHWC", "HWIO", "NHWC")


def init_dense(rng: np.random.Generator, fan_in: int, fan_out: int, *, lr_mul: float = 1.0,
               bias_init: float = 0.0) -> dict:
    """Equalised-lr dense params: w stored N(0,1)/lr_mul, b = bias_init/lr_mul (so the effective bias is bias_init)."""
    return {"w": (rng.standard_normal((fan_in, fan_out)) / lr_mul).astype(np.float32),
            "b": np.full((fan_out,), bias_init / lr_mul, np.float32)}


def dense(params: dict, x: jax.Array, *, gain: float = GAIN, lr_mul: float = 1.0) -> jax.Array:
    """``x @ (w * gain / sqrt(fan_in) * lr_mul) + b * lr_mul`` for (N, fan_in) -> (N, fan_out)."""
    w = params["w"]
    scale = gain / math.sqrt(w.shape[0]) * lr_mul
    return x @ (w * scale) + params["b"] * lr_mul


def init_conv(rng: np.random.Generator, kernel: int, c_in: int, c_out: int, *, bias: bool = True) -> dict:
    """Equalised-lr conv params: HWIO kernel stored N(0, 1), and a zero bias unless ``bias=False``."""
    params = {"w": rng.standard_normal((kernel, kernel, c_in, c_out)).astype(np.float32)}
    if bias:
        params["b"] = np.zeros((c_out,), np.float32)
    return params


def conv(params: dict, x: jax.Array, *, gain: float = GAIN) -> jax.Array:
    """Same-padded stride-1 convolution with the run-time He scale (fan_in = k*k*c_in), plus the
    bias if the params have one (StyleGAN's synthesis convs have none: it adds the bias after the noise)."""
    w = params["w"]
    scale = gain / math.sqrt(w.shape[0] * w.shape[1] * w.shape[2])
    y = jax.lax.conv_general_dilated(x, w * scale, (1, 1), "SAME", dimension_numbers=_DN)
    return y + params["b"] if "b" in params else y


def leaky_relu(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, 0.2 * x)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Normalise every feature vector (last axis) to unit root-mean-square, as progressive GAN / StyleGAN."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def _blur_axis(x: jax.Array, axis: int) -> jax.Array:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    p = jnp.pad(x, pad)
    n = x.shape[axis]
    take = lambda start: jax.lax.slice_in_dim(p, start, start + n, axis=axis)  # noqa: E731
    return (take(0) + 2 * take(1) + take(2)) * 0.25


def blur(x: jax.Array) -> jax.Array:
    """The [1,2,1] x [1,2,1] / 16 filter per channel, zero-padded to the same size (StyleGAN's blur2d).

    Separable shifts and adds rather than a depthwise convolution: XLA's CPU depthwise conv was 5x
    slower than a full 64->64 3x3 conv on the same features.
    """
    return _blur_axis(_blur_axis(x, 1), 2)


def upsample_nearest(x: jax.Array) -> jax.Array:
    """2x nearest-neighbour upsampling; followed by `blur`, it is bilinear upsampling."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample_average(x: jax.Array) -> jax.Array:
    """2x2 average pooling; preceded by `blur`, it is bilinear downsampling."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
