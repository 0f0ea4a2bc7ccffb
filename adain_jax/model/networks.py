"""The AdaIN encoder (normalised VGG-19 up to relu4_1) and decoder as pure functions of their params.

`encode` and `decode` walk the layer table (`adain_jax.model.architecture`); the same computation
as Flax linen modules is in `adain_jax.model.modules` (`Encoder`, `Decoder`), for code that
composes Flax modules. Plain functions keep Flax out of a command's start-up and trace faster.
Inputs and outputs are NHWC. The params pytree of each network is ``{layer_name: {"kernel": HWIO,
"bias": (O,)}}`` with the names of `adain_jax.model.architecture`, so converted official weights, trained
weights and freshly initialised ones are interchangeable. The whole model's weights are the dict
``{"encoder": ..., "decoder": ...}``, plus ``"variant"`` for a decoder variant of the MVA study
(skip connections, input normalisation: `adain_jax.model.variants`; `decode` takes the skips).

Numerics follow the PyTorch port: reflection padding before every 3x3 convolution, 2x2 max-pooling
in ceil mode (a trailing odd row/column forms its own window), nearest 2x upsampling in the
decoder and no activation after its last layer.

Performance notes (CPU; measurements in docs/performance.md). The graph is written so that XLA can
fuse everything between two convolutions into one pass over memory: reflection padding is one
concatenate of slices of the input (`reflect_pad`), pooling is an elementwise max of strided slices
(`max_pool_ceil`), and a decoder convolution that follows an upsampling never materialises the
upsampled image (`upsample_reflect_conv`), which also removes 5/9 of its multiply-adds. All of these
are exact rewrites: only the order of float additions differs from the PyTorch port. On CPUs where
oneDNN's float32 convolutions measured faster than XLA's, those layers run as one oneDNN call each
instead, with the same fusions inside it (`float32_route`, `FLOAT32_ROUTES`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.model import architecture, initialisation, ops, variants
from adain_jax.model.architecture import Params
from adain_jax.model.ops import max_pool_ceil
from adain_jax.model.variants import Weights


def _pad_width(x: jax.Array, mode: str) -> jax.Array:
    w = x.shape[2]
    left, right = (x[:, :, 1:2], x[:, :, w - 2:w - 1]) if mode == "reflect" else (x[:, :, :1], x[:, :, w - 1:])
    return jnp.concatenate([left, x, right], axis=2)


def pad1(x: jax.Array, mode: str = "reflect") -> jax.Array:
    """1-pixel ``reflect`` (PyTorch ReflectionPad2d) or ``edge`` padding of NHWC height and width.

    Same values as ``jnp.pad(x, ..., mode=mode)``, built as one concatenate of slices of ``x`` with
    no intermediate used twice, so XLA emits a single loop fusion that also absorbs the producer
    (bias + ReLU, pooling). ``jnp.pad`` pads one axis after the other: two passes over memory.
    """
    h, w = x.shape[1], x.shape[2]
    if h < 2 or w < 2:  # reflection needs two pixels; let jnp.pad decide (PyTorch raises here)
        return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
    top, bottom = (x[:, 1:2], x[:, h - 2:h - 1]) if mode == "reflect" else (x[:, :1], x[:, h - 1:])
    return jnp.concatenate([_pad_width(top, mode), _pad_width(x, mode), _pad_width(bottom, mode)], axis=1)


def reflect_pad(x: jax.Array) -> jax.Array:
    return pad1(x, "reflect")


def _conv_valid(x: jax.Array, kernel: jax.Array, dtype: Any) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x.astype(dtype),
        kernel.astype(dtype),
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        # Full float32 accumulation: XLA's default may use reduced precision on some backends,
        # which would break parity with the PyTorch reference.
        precision=jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None,
    )


# For nearest 2x upsampling followed by a reflection-padded 3x3 convolution: output row 2i + p
# (phase p) reads upsampled rows 2i + p - 1 .. 2i + p + 1, i.e. low-resolution rows (i - 1, i, i)
# for p = 0 and (i, i, i + 1) for p = 1. So each phase is a 2x2 convolution of the low-resolution
# image whose taps are sums of the 3x3 kernel's rows: ((k0), (k1 + k2)) and ((k0 + k1), (k2)). The
# same holds for columns. At the border, reflecting the upsampled image equals replicating (edge
# padding) the low-resolution one, because upsampled rows 0 and 1 are both low-resolution row 0.
_PHASE_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))


def phase_kernels(kernel: jax.Array) -> jax.Array:
    """(3, 3, I, O) kernel -> (2, 2, I, 4 * O): the 2x2 kernels of phases (0,0), (0,1), (1,0), (1,1)."""
    phases = []
    for p in range(2):
        for q in range(2):
            phases.append(jnp.stack([
                jnp.stack([sum(kernel[r, s] for r in _PHASE_TAPS[p][a] for s in _PHASE_TAPS[q][b])
                           for b in range(2)])
                for a in range(2)]))
    return jnp.concatenate(phases, axis=-1)


def upsample_reflect_conv(x: jax.Array, kernel: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """``conv3x3_valid(reflect_pad(upsample_nearest_2x(x)), kernel)`` without the upsampled image.

    One 2x2 convolution with the four phase kernels side by side (4 * O output channels) over the
    edge-padded low-resolution input: 16 instead of 36 multiply-adds per input channel and output
    pixel, and a quarter of the memory traffic. Phase (p, q) is the output window [p:p+h, q:q+w];
    interleaving the phases is one loop fusion, together with the bias, ReLU and the next padding.
    Exact in real arithmetic; float sums differ from the direct form by rounding only.
    """
    phases = phase_kernels(kernel.astype(jnp.promote_types(kernel.dtype, dtype)))
    z = _conv_valid(pad1(x, "edge"), phases, dtype)  # (n, h+1, w+1, 4o)
    return ops.interleave_phases(z)


def conv_layer(params: Params, x: jax.Array, spec: architecture.ConvSpec, dtype: Any = jnp.float32, *,
               upsample_input: bool = False, pool_output: bool = False) -> jax.Array:
    """One layer of either network: reflection-padded 'valid' convolution, bias, ReLU (if the spec has one).

    ``params`` is the layer's ``{"kernel": HWIO, "bias": (O,)}``. With ``upsample_input`` the layer
    computes ``conv(reflect_pad(upsample_nearest_2x(x)))`` (the decoder's layers after an
    upsampling) through `upsample_reflect_conv`; with ``pool_output`` it returns ``max_pool_ceil``
    of its activation. With a bfloat16 ``dtype`` the 3x3 layers run as one
    `adain_jax.onednn.conv.conv2d` call each (padding, bias, ReLU, pooling and the upsampling inside
    it; oneDNN on CPUs with bfloat16 units, XLA's bfloat16 convolutions elsewhere and on a mesh of
    several CPU devices), in inference and training alike; the 1x1 RGB layer stays float32. In float32
    a 3x3 layer runs the same way through oneDNN's float32 kernels where `float32_route` says they are
    faster on this CPU, else through XLA.
    """
    kernel, bias = params["kernel"], params["bias"]
    if dtype == jnp.bfloat16:
        if spec.kernel_size == 1:
            dtype = jnp.float32  # 3 input channels: nothing to gain, and the input keeps full precision
        else:
            return _conv_layer_onednn(kernel, bias, x, spec, upsample_input, pool_output, jnp.bfloat16,
                                      reference=cpu_mesh())
    elif dtype == jnp.float32 and spec.kernel_size == 3 and min(x.shape[1:3]) >= 2:
        # (Under 2x2 pixels reflection is undefined: XLA's path below pads as `pad1` does, and the
        # caller's own checks get to say what is wrong with such an input.)
        route = float32_route(spec)
        if route in ("onednn", "winograd"):
            return _conv_layer_onednn(kernel, bias, x, spec, upsample_input, pool_output, jnp.float32,
                                      winograd=route == "winograd")
        if route == "forward":
            return _onednn_unless_differentiated(kernel, bias, x, spec, upsample_input, pool_output)
    return _conv_layer_xla(kernel, bias, x, spec, dtype, upsample_input, pool_output)


# Which float32 3x3 layers oneDNN computes faster than XLA, per the instructions oneDNN uses (its ISA
# name's prefix), from `python -m benchmarks.conv_layers` (docs/performance.md, "float32 through
# oneDNN"): (network, layer name) -> "onednn" (forward and gradients through oneDNN), "winograd" (the
# same, with the forward pass by Winograd's F(2x2, 3x3) where `conv.winograd_applies`) or "forward"
# (oneDNN where the layer is not differentiated, e.g. inference and the train step's content and style
# encodings; XLA's forward and gradients where it is). A layer not listed runs XLA.
# Rule: "onednn" where the median of the forward + backward ratios (oneDNN / XLA, at 256^2 and 128^2
# crops, batch 8) is at most 0.95, else "forward" where the median forward ratio is below 0.95; except
# that the whole train step decides where it disagrees with the single layers (AVX-512's encoder).
FLOAT32_ROUTES: dict[str, dict[tuple[str, str], str]] = {
    # 2-core Xeon with AVX-512 (oneDNN: avx512_core_fp16), two runs; then the whole train step decided
    # (paired, 8-20 rounds per run). The encoder is all "onednn": alone, conv1_2-conv3_3's oneDNN
    # backward is no faster than XLA's, but in the step (where the loss network's layers run beside the
    # content and style encodings) all-oneDNN took 0.966, 0.966 and 0.990 of the per-layer table's time
    # at 128^2 and 0.988 at 256^2 (docs/performance.md, "The encoder all through oneDNN"). The decoder
    # is all "onednn" since the backward calls pad inside themselves: 0.988 (128^2) and 0.970 (256^2)
    # of the per-layer table's step (docs/performance.md, "Padding inside the backward calls").
    # "winograd" (session 14, AMD Zen 5): the same, with the forward pass by Winograd's F(2x2, 3x3)
    # (`adain_jax.onednn.conv`) on every 3x3 layer with at least 64 input and output channels after
    # the first block; in the whole 128^2 train step 0.885 of the "onednn" table's time, the encoder's
    # layers alone 0.913 (docs/performance.md, "Winograd's F(2x2, 3x3) forward").
    "avx512": {
        ("encoder", "conv1_1"): "onednn", ("encoder", "conv1_2"): "onednn", ("encoder", "conv2_1"): "winograd",
        ("encoder", "conv2_2"): "winograd", ("encoder", "conv3_1"): "winograd", ("encoder", "conv3_2"): "winograd",
        ("encoder", "conv3_3"): "winograd", ("encoder", "conv3_4"): "winograd", ("encoder", "conv4_1"): "winograd",
        ("decoder", "conv4_1"): "winograd", ("decoder", "conv3_4"): "onednn", ("decoder", "conv3_3"): "winograd",
        ("decoder", "conv3_2"): "winograd", ("decoder", "conv3_1"): "winograd", ("decoder", "conv2_2"): "onednn",
        ("decoder", "conv2_1"): "winograd", ("decoder", "conv1_2"): "onednn", ("decoder", "conv1_1"): "onednn",
    },
    # The same machine with oneDNN and XLA's generated code held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2,
    # --xla_cpu_max_isa=AVX2), one run: a stand-in for AVX2-only CPUs such as AMD Zen 3. Then (session
    # 14, a Zen 5 held to AVX2 the same way) "winograd" on the AVX-512 table's Winograd layers: the whole
    # 128^2 train step took 0.755 of this table's time before (0.749 of the same layers on "onednn").
    "avx2": {
        ("encoder", "conv1_1"): "onednn", ("encoder", "conv1_2"): "forward", ("encoder", "conv2_1"): "winograd",
        ("encoder", "conv2_2"): "winograd", ("encoder", "conv3_1"): "winograd", ("encoder", "conv3_2"): "winograd",
        ("encoder", "conv3_3"): "winograd", ("encoder", "conv3_4"): "winograd", ("encoder", "conv4_1"): "winograd",
        ("decoder", "conv4_1"): "winograd", ("decoder", "conv3_3"): "winograd", ("decoder", "conv3_2"): "winograd",
        ("decoder", "conv3_1"): "winograd", ("decoder", "conv2_2"): "forward", ("decoder", "conv2_1"): "winograd",
        ("decoder", "conv1_2"): "forward", ("decoder", "conv1_1"): "forward",
    },
}


def float32_route(spec: architecture.ConvSpec) -> str | None:
    """How `conv_layer` runs a float32 3x3 layer here: "onednn", "winograd", "forward" (see `FLOAT32_ROUTES`), or None
    for XLA: on a one-device CPU backend whose oneDNN float32 path is available
    (`adain_jax.onednn.available`; ``ADAIN_JAX_ONEDNN=0`` turns it off) and a layer of the AdaIN encoder
    or decoder that it speeds up there. Other layers (a decoder variant's merged inputs, say) keep XLA."""
    from adain_jax import onednn

    if jax.default_backend() != "cpu" or cpu_mesh() or not onednn.available("float32"):
        return None
    network = "encoder" if spec in architecture.ENCODER else "decoder" if spec in architecture.DECODER else None
    family = "avx512" if onednn.isa().startswith("avx512") else "avx2"
    return FLOAT32_ROUTES[family].get((network, spec.name)) if network else None


def cpu_mesh() -> bool:
    """Whether programs here may span several CPU devices. The oneDNN FFI call has no partitioning rule:
    on a mesh XLA would gather the batch and run every call whole on each device, so there the layers
    keep XLA's own convolution, which the partitioner splits (float32 and bfloat16 alike)."""
    return jax.default_backend() == "cpu" and jax.device_count() > 1


def _conv_layer_xla(kernel: jax.Array, bias: jax.Array, x: jax.Array, spec: architecture.ConvSpec, dtype: Any,
                    upsample_input: bool, pool_output: bool) -> jax.Array:
    """`conv_layer` through XLA's own convolution, in ``dtype``."""
    if upsample_input:
        if spec.kernel_size != 3:
            raise ValueError(f"{spec.name}: upsample_input needs a 3x3 kernel")
        y = upsample_reflect_conv(x, kernel, dtype)
    else:
        if spec.kernel_size == 3:
            x = reflect_pad(x)
        elif spec.kernel_size != 1:
            raise ValueError(f"{spec.name}: only 1x1 and 3x3 kernels are supported")
        y = _conv_valid(x, kernel, dtype)
    if pool_output:
        # max-pool(relu(y + b)) == relu(max-pool(y) + b) exactly, since x -> relu(x + b) is
        # monotone per channel (rounding included). Pooling first adds the bias and ReLU to a
        # quarter of the values and lets XLA fuse the three with the next layer's padding:
        # one pass over the convolution's output instead of two.
        y = max_pool_ceil(y)
    y = y + jnp.asarray(bias).astype(dtype)
    return jax.nn.relu(y) if spec.relu else y


def _conv_layer_onednn(kernel: jax.Array, bias: jax.Array, x: jax.Array, spec: architecture.ConvSpec,
                       upsample_input: bool, pool_output: bool, dtype: Any, *, reference: bool = False,
                       winograd: bool = False) -> jax.Array:
    """`conv_layer` of a 3x3 layer as one `adain_jax.onednn.conv.conv2d` call (``dtype`` result); with
    ``reference``, its XLA twin `conv.reference_conv2d` (the same arithmetic, which XLA can partition);
    ``winograd``: its forward pass by Winograd's F(2x2, 3x3) where `conv.winograd_applies`."""
    from adain_jax.onednn import conv

    if spec.kernel_size != 3:
        raise ValueError(f"{spec.name}: only 1x1 and 3x3 kernels are supported")
    # (conv2d itself leaves the upsampling layers to the direct call: `conv.winograd_applies`.)
    conv2d = conv.reference_conv2d if reference else functools.partial(conv.conv2d, winograd=winograd)
    if upsample_input:
        return conv2d(x, phase_kernels(jnp.asarray(kernel, jnp.float32)), jnp.tile(bias, 4),
                      relu=spec.relu, padding="edge", upsample=True, dtype=dtype)
    return conv2d(x, kernel, bias, relu=spec.relu, padding="reflect", pool=pool_output, dtype=dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _onednn_unless_differentiated(kernel: jax.Array, bias: jax.Array, x: jax.Array, spec: architecture.ConvSpec,
                                  upsample_input: bool, pool_output: bool) -> jax.Array:
    """A float32 layer through oneDNN (`_conv_layer_onednn`) when nothing differentiates it, and through
    XLA (`_conv_layer_xla`: its forward pass and JAX's derivative of it) when something does: JAX calls
    the rule below only for a call whose inputs carry tangents."""
    return _conv_layer_onednn(kernel, bias, x, spec, upsample_input, pool_output, jnp.float32)


def _xla_forward(kernel, bias, x, spec, upsample_input, pool_output):
    def layer(kernel, bias, x):
        return _conv_layer_xla(kernel, bias, x, spec, jnp.float32, upsample_input, pool_output)

    return jax.vjp(layer, kernel, bias, x)  # the pullback (a pytree of residuals) is the residual


def _xla_pullback(spec, upsample_input, pool_output, pullback, g):
    return pullback(g)


_onednn_unless_differentiated.defvjp(_xla_forward, _xla_pullback)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def encode(encoder_params: Params, images: jax.Array, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """Normalised VGG-19 up to relu4_1 on NHWC images in [0, 1]: {relu1_1, relu2_1, relu3_1, relu4_1}.

    ``dtype``: of the convolutions (`conv_layer`)."""
    x = images
    features = {}
    for spec in architecture.ENCODER:
        relu_name = "relu" + spec.name[len("conv"):]
        is_feature = relu_name in architecture.FEATURE_LAYERS
        # A pooled layer's activation is never returned (pooling follows relu1_2, relu2_2,
        # relu3_4), so the layer may pool before its bias and ReLU (see conv_layer).
        pool_inside = spec.pool_after and not is_feature
        x = conv_layer(encoder_params[spec.name], x, spec, dtype, pool_output=pool_inside)
        if is_feature:
            features[relu_name] = x
        if spec.pool_after and not pool_inside:
            x = max_pool_ceil(x)
    return features


def decode(decoder_params: Params, features: jax.Array, dtype: Any = jnp.float32, *,
           variant: variants.DecoderVariant | None = None,
           skips: dict[str, jax.Array] | None = None) -> jax.Array:
    """relu4_1 features -> NHWC images 8x the feature map's size (no output activation: values may leave [0, 1]).

    For a ``variant`` with skip connections, ``skips`` are `variants.skip_features`' encoder
    features {relu3_1, relu2_1, relu1_1}, merged into the inputs of decoder conv3_1, conv2_1 and
    conv1_1 (`variants.merge`). The plain decoder (no variant) computes exactly what it always did.
    """
    mode = "none" if variant is None else variant.skip
    merged: dict[str, jax.Array] = {}  # decoder layer -> the skip merged into its input
    if variant is not None and mode != "none":
        if skips is None:
            raise ValueError(f"this decoder ({variant.describe()}) needs its skip features")
        merged = {target: skips[layer] for layer, target in variants.SKIP_LAYERS}
    x = features
    upsample = False
    for spec in architecture.DECODER:
        if spec.name in merged:
            x = variants.merge(x, merged[spec.name], mode)
        # The upsampling after a layer is folded into the next layer's convolution.
        x = conv_layer(decoder_params[spec.name], x, spec, dtype, upsample_input=upsample)
        upsample = spec.upsample_after
    if upsample:  # (not the case for the AdaIN decoder, whose last layer does not upsample)
        x = upsample_nearest_2x(x)
    return x.astype(jnp.float32)


def encode_input(weights: Weights, images: jax.Array, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """`encode` with ``weights["encoder"]`` of what the weights' variant feeds the VGG (images in [0, 1],
    ImageNet-normalised for ``input_norm="imagenet"``)."""
    return encode(weights["encoder"], variants.normalize_input(images, variants.of(weights)), dtype)


def init_weights(rng: jax.Array | int, variant: variants.DecoderVariant | None = None) -> Weights:
    """Randomly initialised weights of the official shapes: He-normal kernels, zero biases.

    Built from the layer table with numpy rather than `Module.init`, which would run the whole
    network eagerly and take tens of seconds on a CPU; the rule is `initialisation.he_params`
    (the modules' ``init`` draws the same distribution). ``rng`` is a JAX key or an int seed.
    The decoder's last layer is scaled down and biased to 0.5 so that an untrained model's output
    lies mostly inside [0, 1] (a grey texture, not saturated colour), which keeps random-weight
    demos readable and comparisons after clipping meaningful. A ``variant`` gets its decoder's
    shapes (`variants.decoder_specs`) and is recorded in the result.
    """
    seed = int(rng) if isinstance(rng, int) else np.asarray(jax.random.key_data(rng)).ravel().tolist()
    gen = np.random.default_rng(seed)
    as_jax = functools.partial(jax.tree.map, jnp.asarray)
    encoder = as_jax(initialisation.he_params(gen, architecture.ENCODER))
    decoder = as_jax(initialisation.he_params(gen, variants.decoder_specs(variant), last_is_output=True))
    return variants.attach({"encoder": encoder, "decoder": decoder}, variant)
