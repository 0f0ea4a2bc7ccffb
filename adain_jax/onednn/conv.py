"""`conv2d`: a bfloat16 or float32 'valid' convolution with bias and optional ReLU, through oneDNN
where it pays.

Semantics (both paths): NHWC input and HWIO kernel rounded to ``dtype`` (bfloat16, the default, or
float32), products summed in float32, float32 bias added, ReLU, one rounding to ``dtype`` (none for
float32). Stride 1, no dilation. ``padding="valid"`` takes
an input the caller padded; ``"reflect"`` / ``"edge"`` pad one pixel on each side first (PyTorch's
ReflectionPad2d / ReplicationPad2d, the values of `adain_jax.model.networks.pad1`): the oneDNN path
does that inside the call, band by band, instead of writing a padded copy of the whole input.
``pool=True`` returns the 2x2 / 2 max-pool in ceil mode (PyTorch's ``ceil_mode=True``: a trailing
odd row / column is a window of its own) of the result, also computed inside the call.
``upsample=True`` is the decoder's nearest 2x upsampling folded into its next convolution (see
`adain_jax.model.networks.upsample_reflect_conv`): with ``padding="edge"`` and the 2x2 kernel of the
four phase kernels side by side (``networks.phase_kernels``, bias tiled 4 times), it returns the
phases interleaved, i.e. the 3x3 convolution of the reflection-padded upsampled input.

On the CPU, with the compiled library and a CPU oneDNN serves for ``dtype``
(`adain_jax.onednn.available`: AVX512-BF16 / AMX-BF16 for bfloat16, AVX2 for float32), the
convolution is an XLA FFI call into oneDNN; elsewhere (and on GPU / TPU, chosen per platform at
lowering) it is `reference_conv2d`, XLA's own convolution. Works under `jax.jit` and `jax.vmap`, and
is differentiable. On the oneDNN path the gradient (`_backward`) takes the cotangent (rounded to
``dtype``) through the pooling and ReLU of the forward pass's own result and undoes the phase
interleaving in JAX (routing and masking: exact), then computes the convolution's two gradients with
oneDNN's backward kernels of ``dtype``, float32 sums and results: `backward_data` for the input,
adding the reflect / edge border's gradient onto the pixels it copies, and `backward_weights` for
the kernel and bias, padding the input band by band; both inside their calls, as the forward pads,
so no padded copy is written. So it is the float32 convolution's gradient at the ``dtype`` operands
and cotangent. The reference path is differentiated
by JAX as it is.

Winograd (``winograd=True``, float32, 3x3 kernel, reflection padding, even input size): the oneDNN
path's forward pass transforms the kernel in JAX (`winograd_kernel`, ``G g G^T``) and, in the C++
handler, each band of 2x2 output tiles: the padded input's 4x4 tiles (``B^T d B``: sums of 4 pixels with
signs), 16 products of (tiles x C) and (C x O) matrices by one oneDNN matmul, then ``A^T M A`` (sums of 9),
bias, ReLU and pooling. The input's gradient is the same algorithm on the cotangent zero-padded by 2
with the flipped, transposed kernel, whose result (the padded input's gradient) is folded onto the
input as `backward_data` folds it; the kernel's gradient stays oneDNN's direct one. Exact in real
arithmetic; in float32 its results differ from the direct convolution's by rounding of the same size
(relative L2 differences from XLA's of 3-6e-7 against the direct oneDNN call's 3-9e-7 on the AdaIN
layers at 128^2; tests/test_onednn.py bounds them from the transforms' roundings). The transforms are
memory-bound passes over 4x the activations: written in JAX they made Winograd slower than XLA's direct
convolution (docs/performance.md), so the handler runs them per band of tiles, in cache, beside the
matmul that consumes them.

Whether float32 layers should take this path at all, and which with Winograd, is
`adain_jax.model.networks`' choice (`float32_route`), made from measurements.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax import onednn
from adain_jax.model import ops

PADDINGS = {"valid": 0, "reflect": 1, "edge": 2}  # the handler's `pad` attribute


def _border(padding: str, what: str) -> int:
    """The pixels ``padding`` adds to each spatial dimension."""
    if padding not in PADDINGS:
        raise ValueError(f"{what}: padding must be one of {sorted(PADDINGS)}, not {padding!r}")
    return 0 if padding == "valid" else 2


def _check(x: jax.Array, kernel: jax.Array, bias: jax.Array, padding: str, pool: bool,
           upsample: bool) -> tuple[int, ...]:
    border = _border(padding, "conv2d")
    if x.ndim != 4 or kernel.ndim != 4 or bias.ndim != 1:
        raise ValueError(f"conv2d: expected NHWC input, HWIO kernel and (O,) bias; got shapes "
                         f"{x.shape}, {kernel.shape}, {bias.shape}")
    n, h, w, c = x.shape
    if padding == "reflect" and (h < 2 or w < 2):
        raise ValueError(f"conv2d: reflection padding needs at least 2x2 pixels, got input {x.shape}")
    h, w = h + border, w + border
    kh, kw, i, o = kernel.shape
    if i != c or bias.shape[0] != o:
        raise ValueError(f"conv2d: kernel {kernel.shape} and bias {bias.shape} do not fit input {x.shape}")
    if h < kh or w < kw:
        raise ValueError(f"conv2d: input {x.shape} is smaller than the kernel {kernel.shape}")
    if upsample and (pool or padding != "edge" or (kh, kw) != (2, 2) or o % 4):
        raise ValueError(f"conv2d: upsample=True needs padding='edge', no pooling and a 2x2 kernel of four "
                         f"phases (O divisible by 4); got padding={padding!r}, pool={pool}, kernel {kernel.shape}")
    oh, ow = h - kh + 1, w - kw + 1
    if upsample:
        return n, 2 * x.shape[1], 2 * x.shape[2], o // 4
    return (n, -(-oh // 2), -(-ow // 2), o) if pool else (n, oh, ow, o)


def _dtype(dtype: Any) -> str:
    """``dtype`` as the name the oneDNN path takes ("bfloat16" / "float32"); ValueError otherwise."""
    name = jnp.dtype(dtype).name
    if name not in onednn.DTYPES:
        raise ValueError(f"conv2d: dtype must be bfloat16 or float32, not {name}")
    return name


def _linear(x: jax.Array, kernel: jax.Array, bias: jax.Array, padding: str, upsample: bool) -> jax.Array:
    """The call's affine part: padding, the convolution summed in float32, float32 bias, phase interleaving."""
    if padding != "valid":
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=padding)
    # float32 operands must not be rounded by a backend's default precision (as in networks._conv_valid).
    precision = jax.lax.Precision.HIGHEST if x.dtype == jnp.float32 else None
    y = jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding="VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
                                     preferred_element_type=jnp.float32)
    y = y + bias.astype(jnp.float32)
    return ops.interleave_phases(y) if upsample else y


def reference_conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, relu: bool,
                     padding: str = "valid", pool: bool = False, upsample: bool = False,
                     dtype: Any = jnp.bfloat16) -> jax.Array:
    """`conv2d` computed by XLA: ``dtype`` operands, float32 accumulation and bias, ``dtype`` result."""
    _check(x, kernel, bias, padding, pool, upsample)
    dtype = _dtype(dtype)
    y = _linear(x.astype(dtype), kernel.astype(dtype), bias, padding, upsample)
    if relu:
        y = jax.nn.relu(y)  # after the interleaving, a permutation: the same values
    y = y.astype(dtype)
    return ops.max_pool_ceil(y) if pool else y


def _onednn_conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, relu: bool, padding: str,
                   pool: bool, upsample: bool, dtype: str, winograd: bool = False) -> jax.Array:
    if winograd and dtype == "float32" and winograd_applies(x.shape, kernel.shape, padding, upsample):
        return _winograd_conv2d(x, kernel, bias, relu=relu, pool=pool)
    out_shape = _check(x, kernel, bias, padding, pool, upsample)
    # expand_dims: a vmapped call reaches the handler once, with the batch as leading dimensions
    # (size 1 for unbatched operands), which it folds into N when the weights are shared.
    call = jax.ffi.ffi_call(onednn.TARGET, jax.ShapeDtypeStruct(out_shape, dtype), vmap_method="expand_dims")
    return call(x.astype(dtype), kernel.astype(dtype), bias.astype(jnp.float32),
                relu=bool(relu), pad=np.int32(PADDINGS[padding]), pool=bool(pool), upsample=bool(upsample))


def winograd_kernel(kernel: jax.Array) -> jax.Array:
    """A 3x3 HWIO kernel -> Winograd F(2x2, 3x3)'s 4x4xIxO transformed kernel ``G g G^T``, in float32,
    with G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] (Lavin & Gray). Written as sums
    of slices: XLA's einsum for the same took 30x as long (7.5 against 0.25 ms at 256x256 channels)."""
    def g(a0, a1, a2):  # G applied along the leading axis of three slices
        return [a0, (a0 + a1 + a2) * 0.5, (a0 - a1 + a2) * 0.5, a2]

    kernel = kernel.astype(jnp.float32)
    rows = g(kernel[0], kernel[1], kernel[2])  # 4 x (3, C, O)
    return jnp.stack([jnp.stack(g(r[0], r[1], r[2])) for r in rows])


def winograd_applies(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], padding: str, upsample: bool) -> bool:
    """Whether `conv2d(..., winograd=True)` can take Winograd's F(2x2, 3x3) path for these operands: a
    3x3 kernel with input and output channels, reflection padding, no upsampling and an even-sized input
    (2x2 output tiles)."""
    return (tuple(kernel_shape[:2]) == (3, 3) and min(kernel_shape[2:4]) > 0 and padding == "reflect"
            and not upsample and x_shape[-3] % 2 == 0 and x_shape[-2] % 2 == 0)


def _winograd_conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, relu: bool, pool: bool) -> jax.Array:
    """The float32 convolution with reflection padding, bias, ReLU and pooling as `_onednn_conv2d`'s,
    through the Winograd handler (`winograd_applies` must hold)."""
    out_shape = _check(x, kernel, bias, "reflect", pool, False)
    call = jax.ffi.ffi_call(onednn.WINOGRAD_TARGET, jax.ShapeDtypeStruct(out_shape, jnp.float32),
                            vmap_method="expand_dims")
    return call(x.astype(jnp.float32), winograd_kernel(kernel), bias.astype(jnp.float32),
                relu=bool(relu), pool=bool(pool))


def backward_data(dy: jax.Array, kernel: jax.Array, dtype: Any = jnp.bfloat16, padding: str = "valid",
                  winograd: bool = False) -> jax.Array:
    """The gradient of a stride-1 convolution with respect to its input, through oneDNN.

    ``dy``: (N, OH, OW, O), the cotangent of the convolution's output; ``kernel``: HWIO; both rounded
    to ``dtype`` (bfloat16 or float32). ``padding`` as `conv2d`'s: the gradient of the padded input's
    border is added onto the pixels it copies inside the call. Returns float32 (N, OH + KH - 1 - B,
    OW + KW - 1 - B, C), B = 2 when padded, sums in float32. With ``winograd``, a float32 call that
    `winograd_applies` to (as the forward's, at dy's size) is Winograd's F(2x2, 3x3) of dy zero-padded by
    2 and the flipped, transposed kernel (the padded input's gradient), folded onto the input. Needs
    `adain_jax.onednn.available` for ``dtype`` (it registers the target)."""
    dtype = _dtype(dtype)
    n, oh, ow, _ = dy.shape
    kh, kw, c, _ = kernel.shape
    if winograd and dtype == "float32" and winograd_applies(dy.shape, kernel.shape, padding, False):
        call = jax.ffi.ffi_call(onednn.WINOGRAD_BACKWARD_DATA_TARGET,
                                jax.ShapeDtypeStruct((n, oh, ow, c), jnp.float32), vmap_method="expand_dims")
        flipped = jnp.flip(kernel.astype(jnp.float32), (0, 1)).transpose(0, 1, 3, 2)
        return call(dy.astype(jnp.float32), winograd_kernel(flipped))
    border = _border(padding, "backward_data")
    call = jax.ffi.ffi_call(onednn.BACKWARD_DATA_TARGET,
                            jax.ShapeDtypeStruct((n, oh + kh - 1 - border, ow + kw - 1 - border, c), jnp.float32),
                            vmap_method="expand_dims")
    return call(dy.astype(dtype), kernel.astype(dtype), pad=np.int32(PADDINGS[padding]))


def backward_weights(x: jax.Array, dy: jax.Array, dtype: Any = jnp.bfloat16,
                     padding: str = "valid") -> tuple[jax.Array, jax.Array]:
    """The gradients of a stride-1 convolution of ``x`` (N, H, W, C) with respect to its HWIO kernel
    and its bias, through oneDNN, from ``dy`` (N, OH, OW, O); both rounded to ``dtype``. ``padding``
    as `conv2d`'s: the call pads each band of rows itself, so no padded copy of ``x`` is made.

    Returns float32 (H' - OH + 1, W' - OW + 1, C, O) and (O,), H', W' the padded size, sums in
    float32. Needs `adain_jax.onednn.available` for ``dtype``."""
    dtype = _dtype(dtype)
    _, h, w, c = x.shape
    _, oh, ow, o = dy.shape
    border = _border(padding, "backward_weights")
    call = jax.ffi.ffi_call(onednn.BACKWARD_WEIGHTS_TARGET,
                            (jax.ShapeDtypeStruct((h + border - oh + 1, w + border - ow + 1, c, o), jnp.float32),
                             jax.ShapeDtypeStruct((o,), jnp.float32)),
                            vmap_method="expand_dims")
    dkernel, dbias = call(x.astype(dtype), dy.astype(dtype), pad=np.int32(PADDINGS[padding]))
    return dkernel, dbias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7, 8))
def _differentiable(x: jax.Array, kernel: jax.Array, bias: jax.Array, relu: bool, padding: str, pool: bool,
                    upsample: bool, dtype: str, winograd: bool) -> jax.Array:
    """`_onednn_conv2d` with a gradient (`_forward` and `_backward`)."""
    return _onednn_conv2d(x, kernel, bias, relu=relu, padding=padding, pool=pool, upsample=upsample, dtype=dtype,
                          winograd=winograd)


def _forward(x, kernel, bias, relu, padding, pool, upsample, dtype, winograd):
    # Under differentiation a pooled layer pools outside the call: its gradient needs the activation.
    activation = _onednn_conv2d(x, kernel, bias, relu=relu, padding=padding, pool=False, upsample=upsample,
                                dtype=dtype, winograd=winograd)
    out = ops.max_pool_ceil(activation) if pool else activation
    return out, (x, kernel, bias, activation)


def route_cotangent(g: jax.Array, activation: jax.Array, *, relu: bool, pool: bool, upsample: bool,
                    dtype: Any) -> jax.Array:
    """The cotangent of a `conv2d` result -> that of its convolution, in ``dtype``: back through the
    pooling and the ReLU (``activation``: the unpooled ReLU output) and, with ``upsample``, from the
    interleaved image to the phases (what `backward_data` and `backward_weights` take).

    It runs in float32 and rounds once at the end. These steps only move values, scale them by 1/2 or
    1/4 (the pooling's ties) or zero them, so bfloat16 would give the same bits; but XLA:CPU computes
    each bfloat16 op of such a chain through a float32 round trip, which made the pooling's gradient
    at 8x128x128x64 7x slower than in float32 (114 against 16 ms on a 2-core Zen 5) and the bfloat16
    train step 14 % slower."""
    g = g.astype(jnp.float32)
    if pool or relu:
        activation = activation.astype(jnp.float32)
    if pool:
        g = jax.vjp(ops.max_pool_ceil, activation)[1](g)[0]
    if relu:
        g = jnp.where(activation > 0, g, jnp.zeros_like(g))
    if upsample:  # interleaving only permutes (and drops a border), exactly
        n, h2, w2, o = g.shape
        g, = jax.linear_transpose(ops.interleave_phases,
                                  jax.ShapeDtypeStruct((n, h2 // 2 + 1, w2 // 2 + 1, 4 * o), jnp.float32))(g)
    # The cotangent of conv2d's result has its dtype already, so this rounds nothing unless a caller
    # hands in a float32 cotangent to a bfloat16 call.
    return g.astype(dtype)


def _backward(relu, padding, pool, upsample, dtype, winograd, residuals, g):
    x, kernel, bias, activation = residuals
    g = route_cotangent(g, activation, relu=relu, pool=pool, upsample=upsample, dtype=dtype)
    dx = backward_data(g, kernel, dtype, padding, winograd)
    dkernel, dbias = backward_weights(x, g, dtype, padding)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype), dbias.astype(bias.dtype)


_differentiable.defvjp(_forward, _backward)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, relu: bool, padding: str = "valid",
           pool: bool = False, upsample: bool = False, dtype: Any = jnp.bfloat16,
           winograd: bool = False) -> jax.Array:
    """Stride-1 convolution of NHWC ``x`` with an HWIO kernel (any KHxKW), + ``bias``, ReLU if ``relu``.

    Returns ``dtype`` (bfloat16 or float32) of shape (N, H' - KH + 1, W' - KW + 1, O), where H', W' are
    the input's size after ``padding`` ("valid": none; "reflect" / "edge": one pixel each side), or its ceil-mode
    2x2 max-pool with ``pool``, or (N, 2H, 2W, O / 4) with ``upsample``. See the module docstring for
    the arithmetic, which both paths share.

    ``winograd``: on the oneDNN path, a float32 call that `winograd_applies` to computes its forward
    pass and the gradient of its input by Winograd's F(2x2, 3x3) (16 instead of 36 multiplications per
    2x2 output tile and channel pair; its own rounding, within the direct convolution's size: module
    docstring); the kernel's and bias's gradients are the direct ones. Ignored elsewhere (bfloat16,
    other shapes, XLA's path).
    """
    dtype = _dtype(dtype)
    reference = functools.partial(reference_conv2d, relu=relu, padding=padding, pool=pool, upsample=upsample,
                                  dtype=dtype)
    if not onednn.available(dtype):
        return reference(x, kernel, bias)
    def fast(x, kernel, bias):
        return _differentiable(x, kernel, bias, bool(relu), padding, bool(pool), bool(upsample), dtype,
                               bool(winograd))

    return jax.lax.platform_dependent(x, kernel, bias, cpu=fast, default=reference)
