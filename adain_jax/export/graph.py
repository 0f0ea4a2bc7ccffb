"""The exported functions, written so that one trace serves every image size (symbolic shapes).

`style_moments`, `transfer` and `stylize` compute what `adain_jax.transfer` computes for plain AdaIN
(one style per content image, scalar alpha), from the same weights and the same building blocks of
`adain_jax.model.networks`. They are a variant of the network's forward pass, not a copy of its
numbers, because the library's version cannot be traced with symbolic height and width:

- ``networks.max_pool_ceil`` branches in Python on ``H % 2`` and pairs strided slices whose lengths
  JAX cannot prove equal for a symbolic H; jax2onnx 0.17.1 needs constant pad widths, and turns a
  reduce-window into a 4-D MaxPool that onnxruntime rejects. Here the last row and column are
  always repeated once and even and odd rows paired: the same maxima, so the same values bit for
  bit.
- ``networks.pad1`` and ``upsample_reflect_conv`` slice with ``x[:, h - 2:h - 1]`` (a gather once
  ``h`` is symbolic) and join with ``jnp.concatenate`` / ``jnp.stack``. jax2onnx 0.17.1 gets the
  output length of a symbolic ``jnp.concatenate`` wrong (it keeps the first operand's length) and
  cannot copy such a gather; ``lax.slice_in_dim`` and ``lax.concatenate`` convert correctly. The
  phase kernels and the convolution are the library's own (`networks.phase_kernels`,
  `networks._conv_valid`), so the fused upsampling is exported, not replaced by the direct form.
- Pooling follows the ReLU instead of preceding the bias (the library's reordering, which is exact).
- The output is clipped with max then min (what ``jnp.clip`` does) and cropped with ``lax.slice``:
  jax2onnx 0.17.1 cannot convert ``lax.clamp`` or ``lax.pad`` with a symbolic batch (it passes the
  symbolic sizes to onnx-ir as integers).

The only constraint left on the shapes is ``H, W >= MIN_SIZE`` (9): the relu4_1 map is ceil(H / 8)
high and a reflection pad needs two rows (PyTorch raises there too). The output is cropped back to
the content's size, as `adain_jax.stylize` does. tests/test_export_artifacts.py checks these
functions and the artifacts against `adain_jax.stylize`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import export as jax_export
from jax import lax

from adain_jax.model import architecture, networks, ops

# Smallest height and width: ceil(H / 8) >= 2 so that the relu4_1 map can be reflection-padded.
MIN_SIZE = architecture.DOWNSAMPLE_FACTOR + 1
FEATURES = architecture.ENCODER[-1].out_channels  # 512 channels of relu4_1

# Export name -> input names, in the order the exported function takes them.
INPUT_NAMES = {
    "style_moments": ("style",),
    "transfer": ("content", "mean", "std", "alpha"),
    "stylize": ("content", "style", "alpha"),
}
OUTPUT_NAMES = {"style_moments": ("mean", "std"), "transfer": ("image",), "stylize": ("image",)}


def _rows(x, start, stop, axis):
    return lax.slice_in_dim(x, start, stop, axis=axis)


def _pad1(x: jax.Array, mode: str) -> jax.Array:
    """1-pixel ``reflect`` or ``edge`` padding of NHWC height and width (values of `networks.pad1`)."""
    for axis in (1, 2):
        n = x.shape[axis]
        if mode == "reflect":
            first, last = _rows(x, 1, 2, axis), _rows(x, n - 2, n - 1, axis)
        else:
            first, last = _rows(x, 0, 1, axis), _rows(x, n - 1, n, axis)
        x = lax.concatenate([first, x, last], axis)
    return x


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2/2 ceil-mode max-pool (`networks.max_pool_ceil`) for symbolic H and W.

    The last row (column) is repeated once, then the even and odd rows of the H + 1 are paired:
    ceil(H / 2) pairs for even and odd H alike, and an odd H's last row is paired with its copy,
    the same maximum as pooling it on its own.
    """
    for axis in (1, 2):
        n = x.shape[axis]
        x = lax.concatenate([x, _rows(x, n - 1, n, axis)], axis)
        x = jnp.maximum(lax.slice_in_dim(x, 0, n, stride=2, axis=axis),
                        lax.slice_in_dim(x, 1, n + 1, stride=2, axis=axis))
    return x


def upsample_reflect_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`networks.upsample_reflect_conv` (nearest 2x upsampling, reflection pad, 3x3 conv, fused)."""
    n, h, w, _ = x.shape
    o = kernel.shape[-1]
    z = networks._conv_valid(_pad1(x, "edge"), networks.phase_kernels(kernel), jnp.float32)
    rows = []
    for p in range(2):
        cols = [lax.expand_dims(lax.slice(z, (0, p, q, (2 * p + q) * o), (n, p + h, q + w, (2 * p + q + 1) * o)), (3,))
                for q in range(2)]
        rows.append(lax.expand_dims(lax.concatenate(cols, 3), (2,)))  # (n, h, 1, w, 2, o)
    return lax.concatenate(rows, 2).reshape(n, 2 * h, 2 * w, o)


def _layer(params, spec: architecture.ConvSpec, x: jax.Array, upsample: bool = False) -> jax.Array:
    kernel, bias = params[spec.name]["kernel"], params[spec.name]["bias"]
    if upsample:
        y = upsample_reflect_conv(x, kernel)
    else:
        y = networks._conv_valid(_pad1(x, "reflect") if spec.kernel_size == 3 else x, kernel, jnp.float32)
    y = y + bias
    return jnp.maximum(y, 0.0) if spec.relu else y


def encode(encoder_params, images: jax.Array) -> jax.Array:
    """relu4_1 features of NHWC images (`networks.encode(...)["relu4_1"]`)."""
    x = images
    for spec in architecture.ENCODER:
        x = _layer(encoder_params, spec, x)
        if spec.pool_after:
            x = max_pool_ceil(x)
    return x


def decode(decoder_params, features: jax.Array) -> jax.Array:
    """`networks.decode`: relu4_1 features -> images 8x their height and width."""
    x, upsample = features, False
    for spec in architecture.DECODER:
        x = _layer(decoder_params, spec, x, upsample)
        upsample = spec.upsample_after
    return x


def style_moments(weights, style: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(N, Hs, Ws, 3) style images -> relu4_1 mean and std, two (N, 512) arrays."""
    return ops.moments(encode(weights["encoder"], style))


def transfer(weights, content: jax.Array, mean: jax.Array, std: jax.Array, alpha: jax.Array) -> jax.Array:
    """(N, H, W, 3) content + (N, 512) style moments + scalar alpha -> (N, H, W, 3) in [0, 1]."""
    n, h, w, _ = content.shape
    feat = encode(weights["encoder"], content)
    target = ops.adain(feat, mean, std)
    t = alpha * target + (1 - alpha) * feat
    out = decode(weights["decoder"], t)
    out = lax.slice(out, (0, 0, 0, 0), (n, h, w, 3))  # ceil-mode pooling rounded up to a multiple of 8
    # max then min, as jnp.clip does; jax2onnx 0.17.1 cannot convert lax.clamp with symbolic shapes.
    return jnp.minimum(jnp.maximum(out, 0.0), 1.0)


def stylize(weights, content: jax.Array, style: jax.Array, alpha: jax.Array) -> jax.Array:
    """`transfer(content, *style_moments(style), alpha)`: one style image per content image."""
    mean, std = style_moments(weights, style)
    return transfer(weights, content, mean, std, alpha)


FUNCTIONS: dict[str, Callable[..., Any]] = {"style_moments": style_moments, "transfer": transfer, "stylize": stylize}


def input_specs(name: str) -> tuple[jax.ShapeDtypeStruct, ...]:
    """Symbolic-shape arguments of export ``name``: batch, height and width are free (>= MIN_SIZE)."""
    # Every dimension variable of a scope must occur in the arguments, so each export gets its own.
    sizes = {"style_moments": ("style_height", "style_width"), "transfer": ("height", "width"),
             "stylize": ("height", "width", "style_height", "style_width")}[name]
    batch, *dims = jax_export.symbolic_shape(
        ", ".join(("batch", *sizes)), constraints=tuple(f"{s} >= {MIN_SIZE}" for s in sizes))
    f32 = jnp.float32
    images = [jax.ShapeDtypeStruct((batch, dims[i], dims[i + 1], 3), f32) for i in range(0, len(dims), 2)]
    stats = jax.ShapeDtypeStruct((batch, FEATURES), f32)
    alpha = jax.ShapeDtypeStruct((), f32)
    return {"style_moments": (images[0],),
            "transfer": (images[0], stats, stats, alpha),
            "stylize": (images[0], images[-1], alpha)}[name]


def bind(weights, name: str):
    """Export ``name`` as a function of its inputs only, with the weights as constants."""
    fn = FUNCTIONS[name]
    return lambda *args: fn(weights, *args)
