"""``python -m benchmarks.conv_layers``: the convolutions per layer on the CPU, oneDNN against XLA
(float32) and adain-jax against PyTorch (bfloat16).

float32 first (``--float32-sizes``; the train config's sizes, 256^2 and 128^2 crops at batch 8, by
default): every 3x3 layer of the encoder and decoder as `adain_jax.model.networks.conv_layer` runs it,
through XLA's own float32 convolution (`networks._conv_layer_xla`) and as one oneDNN float32 call
(`networks._conv_layer_onednn`: padding, bias, ReLU, pooling or the upsampling phases fused), and,
where it applies (not the upsampling layers), the same call with Winograd's F(2x2, 3x3) forward and
input gradient (route ``winograd``), forward alone and forward + backward as the train step needs it:
the input's gradient for the encoder (frozen; it carries the loss back to the decoder), the input's,
kernel's and bias's for the decoder (not the input's for its first layer). The oneDNN / XLA and
Winograd / oneDNN ratios are what `networks.FLOAT32_ROUTES` routes float32 layers by. ``--train-step`` then times training's whole float32 step with those routes, the same step
with every layer on XLA, and the PyTorch port's step under ``torch.compile``. To see an AVX2-only CPU
(no AVX-512) on a bigger one, run with ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``XLA_FLAGS=--xla_cpu_max_isa=AVX2``
(plus what `adain_jax.xla_flags` adds); the header says the instructions oneDNN reports it uses and
the XLA flags in force.

Then bfloat16, per AdaIN layer shape (the layer table of `adain_jax.model.architecture` at a 512x512 content
image): XLA float32, XLA bfloat16 (`adain_jax.onednn.conv.reference_conv2d`), oneDNN bfloat16
through XLA's FFI (`adain_jax.onednn.conv.conv2d`) and PyTorch bfloat16 (``torch.autocast("cpu")``,
channels_last), each a padded 'valid' 3x3 convolution + bias + ReLU on a bfloat16 input. Then the
whole network (encoder + AdaIN + decoder, content and style of the same size) at 512^2 and 1024^2:
`stylize_bf16` below, built from `conv2d` (reflection padding, the encoder's pooling and the
decoder's upsampling done inside its calls; conv0 and the AdaIN statistics in float32), against the
PyTorch port (tests/torch_reference.py) under bfloat16 autocast in channels_last, with adain-jax's
float32 `stylize` for context. Last, the backward pass per layer at the training shapes (128^2 crops
and 256^2, batch 8 by default): the gradients with respect to the input and to the kernel and bias
of each convolution a training step differentiates, through oneDNN's bfloat16 backward kernels
(`conv.backward_data` / `conv.backward_weights`, what `conv2d`'s gradient runs), through XLA's
float32 transposed convolutions at the bfloat16 operands (the gradient `conv2d` had before), and in
XLA float32.

Times are medians of interleaved rounds (every side once per round, starting one side later each
round), all sides in this one process at the same thread count; ratios are the median of the
per-round ratios, the figure most robust to a shared machine's drifting load. GFLOP/s count the
reference network's multiply-adds (`benchmarks.flops`), so the decoder's cheaper upsampling layers
(below) show as "effective" rates. Weights are the benchmarks' seeded random weights
(`benchmarks.fixtures`): speed does not depend on their values, and neither do the max-abs
differences quoted against the float32 network, which are those of random weights.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable

import numpy as np

from benchmarks import fixtures

# --------------------------------------------------------------------------------------------------
# The network in bfloat16 on `conv2d` (networks.encode / networks.decode with the FFI convolution)
# --------------------------------------------------------------------------------------------------


def _layer(params, x, spec, upsample_input: bool = False, pool: bool = False):
    import jax.numpy as jnp

    from adain_jax.model import networks
    from adain_jax.onednn import conv

    kernel, bias = params["kernel"], params["bias"]
    if spec.kernel_size == 1:
        # conv0 (RGB -> BGR * 255 - mean) has 3 channels: negligible work, so float32 and exact.
        y = jnp.einsum("nhwc,co->nhwo", x.astype(jnp.float32), kernel[0, 0], precision="highest") + bias
        return y.astype(jnp.bfloat16)
    if not upsample_input:
        return conv.conv2d(x, kernel, bias, relu=spec.relu, padding="reflect", pool=pool)
    # networks.upsample_reflect_conv in one call: the four phases of a 2x2 convolution over the
    # edge-padded low-resolution input, bias and ReLU fused, interleaved into the upsampled image.
    return conv.conv2d(x, networks.phase_kernels(kernel.astype(jnp.float32)), jnp.tile(bias, 4),
                       relu=spec.relu, padding="edge", upsample=True)


def encode_bf16(encoder_params, images):
    """relu4_1 features (bfloat16) of NHWC images in [0, 1], following `networks.encode`."""
    from adain_jax.model import architecture

    x = images
    for spec in architecture.ENCODER:
        x = _layer(encoder_params[spec.name], x, spec, pool=spec.pool_after)  # pooled inside the call
    return x


def decode_bf16(decoder_params, features):
    """`networks.decode` (plain decoder) in bfloat16; returns float32 images."""
    import jax.numpy as jnp

    from adain_jax.model import architecture

    x = features.astype(jnp.bfloat16)
    upsample = False
    for spec in architecture.DECODER:
        x = _layer(decoder_params[spec.name], x, spec, upsample_input=upsample)
        upsample = spec.upsample_after
    return x.astype(jnp.float32)


def _stylize_bf16(weights, content, style):
    import jax.numpy as jnp

    from adain_jax.model import ops

    n, h, w, _ = content.shape
    both = encode_bf16(weights["encoder"], jnp.concatenate([content, style]))
    content_feat, style_feat = both[:n].astype(jnp.float32), both[n:]
    target = ops.adain(content_feat, *ops.moments(style_feat))  # statistics in float32
    return jnp.clip(decode_bf16(weights["decoder"], target)[:, :h, :w], 0.0, 1.0)


def stylize_bf16(weights, content, style):
    """Encoder + AdaIN + decoder with bfloat16 convolutions (`adain_jax.onednn.conv.conv2d`)."""
    import jax

    global _jitted
    if _jitted is None:
        _jitted = jax.jit(_stylize_bf16)
    return _jitted(weights, content, style)


_jitted = None


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def interleaved(fns: dict, repeats: int) -> dict:
    """One warm-up call each, then ``repeats`` rounds; each round calls every side once, starting one
    side later than the round before. Returns {name: [seconds per round]}."""
    names = list(fns)
    outputs = {name: fns[name]() for name in names}
    times = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times, outputs


def paired_ratio(times: dict, a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


# --------------------------------------------------------------------------------------------------
# Per-layer table
# --------------------------------------------------------------------------------------------------


def layer_shapes(size: int = 512) -> list[tuple[str, int, int, int, bool]]:
    """(layer names, spatial size, in, out, relu) of every distinct 3x3 layer at a size^2 content."""
    from adain_jax.model import architecture

    rows: dict[tuple, list[str]] = {}
    s = size
    for spec in architecture.ENCODER:
        if spec.kernel_size == 3:
            rows.setdefault((s, spec.in_channels, spec.out_channels, spec.relu), []).append(f"enc {spec.name}")
        if spec.pool_after:
            s = -(-s // 2)
    s = -(-size // architecture.DOWNSAMPLE_FACTOR)
    for spec in architecture.DECODER:
        rows.setdefault((s, spec.in_channels, spec.out_channels, spec.relu), []).append(f"dec {spec.name}")
        if spec.upsample_after:
            s *= 2
    return [(", ".join(names), *key) for key, names in rows.items()]


LAYER_HEADER = (
    "| layers | HxW, in->out | GFLOP | XLA f32 ms | XLA bf16 ms | oneDNN bf16 ms | PyTorch bf16 ms "
    "| GFLOP/s f32 / bf16 / oneDNN / PyTorch | oneDNN / PyTorch |"
)


def _layer_row(torch, rng, names: str, s: int, i: int, o: int, relu: bool, repeats: int) -> str:
    import jax
    import jax.numpy as jnp

    from adain_jax import onednn
    from adain_jax.onednn import conv

    x = rng.uniform(0, 1, (1, s + 2, s + 2, i)).astype(np.float32)
    k = (rng.standard_normal((3, 3, i, o)) / np.sqrt(9 * i)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, o).astype(np.float32)
    xj, xb, kj, bj = jnp.asarray(x), jnp.asarray(x, jnp.bfloat16), jnp.asarray(k), jnp.asarray(b)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    kt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).contiguous(memory_format=torch.channels_last)
    bt = torch.from_numpy(b)
    f32 = jax.jit(functools.partial(_xla_f32, relu=relu))
    bf16 = jax.jit(functools.partial(conv.reference_conv2d, relu=relu))
    fast = jax.jit(functools.partial(conv.conv2d, relu=relu))

    def torch_conv():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.nn.functional.conv2d(xt, kt, bt)
            return torch.relu_(y) if relu else y

    fns = {"f32": lambda: f32(xj, kj, bj).block_until_ready(),
           "bf16": lambda: bf16(xb, kj, bj).block_until_ready(),
           "torch": torch_conv}
    use_onednn = onednn.available()
    if use_onednn:
        fns["onednn"] = lambda: fast(xb, kj, bj).block_until_ready()
    times, _ = interleaved(fns, repeats)
    med = {name: statistics.median(t) for name, t in times.items()}
    gflop = 2 * 9 * i * o * s * s / 1e9
    sides = ("f32", "bf16", "onednn", "torch")
    rates = " / ".join(f"{gflop / med[name]:.0f}" if name in med else "-" for name in sides)
    ratio = f"**{paired_ratio(times, 'onednn', 'torch'):.2f}**" if use_onednn else "-"
    return (f"| {names} | {s}x{s}, {i}->{o} | {gflop:.2f} | {_fmt_ms(med['f32'])} | {_fmt_ms(med['bf16'])} "
            f"| {_fmt_ms(med['onednn']) if use_onednn else '-'} | {_fmt_ms(med['torch'])} | {rates} | {ratio} |")


def _table(title: str, header: str, rows: Iterable[str]) -> list[str]:
    """A markdown table under ``title``, its rows measured one by one (``rows`` is lazy) and each echoed
    to stderr when it is done, so that a long run shows its progress."""
    lines = [title, "", header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        lines.append(row)
        print(row, file=sys.stderr, flush=True)
    return lines


def _per_size(sizes: Iterable[int], header: str, title: Callable[[int], str],
              rows: Callable[[int], Iterable[str]]) -> list[str]:
    """One `_table` per size, each followed by a blank line."""
    lines: list[str] = []
    for size in sizes:
        lines += [*_table(title(size), header, rows(size)), ""]
    return lines


def run_layers(args, torch) -> list[str]:
    rng = np.random.default_rng(0)
    return _table(f"### Per layer ({args.layer_size}^2 content, batch 1, {args.threads} threads)", LAYER_HEADER,
                  (_layer_row(torch, rng, names, s, i, o, relu, args.layer_repeats)
                   for names, s, i, o, relu in layer_shapes(args.layer_size)))


def _xla_f32(x, k, b, relu):
    import jax

    y = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST) + b
    return jax.nn.relu(y) if relu else y


# --------------------------------------------------------------------------------------------------
# float32 per layer: oneDNN against XLA, as networks.conv_layer runs them (training shapes)
# --------------------------------------------------------------------------------------------------


def float32_layers(size: int) -> list[tuple[str, object, int, bool, bool, bool, tuple[int, ...]]]:
    """(layer names, spec, input size, upsample_input, pool_output, encoder?, argnums of the gradient)
    of every distinct 3x3 layer a train step at size^2 crops runs, as `networks.encode` / `decode` call
    `conv_layer`."""
    from adain_jax.model import architecture

    rows: dict[tuple, list] = {}
    s = size
    for spec in architecture.ENCODER:
        if spec.kernel_size == 3:
            pool = spec.pool_after and "relu" + spec.name[len("conv"):] not in architecture.FEATURE_LAYERS
            key = (s, spec.in_channels, spec.out_channels, spec.relu, False, pool, True, (0,))
            rows.setdefault(key, [spec]).append(f"enc {spec.name}")
        if spec.pool_after:
            s = -(-s // 2)
    s, upsample = -(-size // architecture.DOWNSAMPLE_FACTOR), False
    for index, spec in enumerate(architecture.DECODER):
        argnums = (1, 2) if index == 0 else (0, 1, 2)  # the decoder's input is AdaIN's: no gradient
        key = (s // 2 if upsample else s, spec.in_channels, spec.out_channels, spec.relu, upsample, False, False,
               argnums)
        rows.setdefault(key, [spec]).append(f"dec {spec.name}" + (" (upsampled)" if upsample else ""))
        if spec.upsample_after:
            s *= 2
        upsample = spec.upsample_after
    return [(", ".join(names[1:]), names[0], key[0], key[4], key[5], key[6], key[7]) for key, names in rows.items()]


FLOAT32_HEADER = (
    "| layers | batch x HxW, in->out | GFLOP fwd / fwd+bwd | XLA fwd ms | oneDNN fwd ms | **oneDNN / XLA fwd** "
    "| XLA fwd+bwd ms | oneDNN fwd+bwd ms | **oneDNN / XLA fwd+bwd** | Winograd fwd ms | **Winograd / oneDNN fwd** "
    "| Winograd fwd+bwd ms | **Winograd / oneDNN fwd+bwd** | rel. L2 diff fwd / grads |"
)


def _float32_row(rng, names, spec, batch, s, upsample, pool, argnums, repeats) -> str:
    import jax
    import jax.numpy as jnp

    from adain_jax import onednn
    from adain_jax.model import networks
    from adain_jax.onednn import conv

    i, o = spec.in_channels, spec.out_channels
    x = jnp.asarray(rng.uniform(0, 1, (batch, s, s, i)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, i, o)) / np.sqrt(9 * i), jnp.float32)
    b = jnp.asarray(rng.uniform(-0.1, 0.1, o), jnp.float32)

    def layer(path):
        def f(x, k, b):
            if path == "xla":
                return networks._conv_layer_xla(k, b, x, spec, jnp.float32, upsample, pool)
            return networks._conv_layer_onednn(k, b, x, spec, upsample, pool, jnp.float32,
                                               winograd=path == "winograd")
        return f

    out_shape = jax.eval_shape(layer("xla"), x, k, b).shape
    g = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)

    def grads(path):
        f = layer(path)
        return jax.jit(lambda x, k, b: jax.grad(lambda *a: jnp.vdot(f(*a), g), argnums=argnums)(x, k, b))

    fns, outputs = {}, {}
    paths = ("xla", "onednn") if onednn.available("float32") else ("xla",)
    if "onednn" in paths and conv.winograd_applies(x.shape, k.shape, "edge" if upsample else "reflect", upsample):
        paths += ("winograd",)
    for path in paths:
        fwd, bwd = jax.jit(layer(path)), grads(path)
        fns[f"{path} fwd"] = lambda fwd=fwd: fwd(x, k, b).block_until_ready()
        fns[f"{path} bwd"] = lambda bwd=bwd: jax.block_until_ready(bwd(x, k, b))
    times, outputs = interleaved(fns, repeats)
    med = {name: statistics.median(t) for name, t in times.items()}
    # Multiply-adds of the 3x3 convolution (an upsampled layer's phases do 16/36 of them at 2x the size).
    pixels = (2 * s) ** 2 if upsample else s * s
    macs = 9 * i * o * pixels * batch * (16 / 36 if upsample else 1)
    gflop = 2 * macs / 1e9
    gflop_bwd = gflop * (1 + (0 in argnums) + (1 in argnums))

    def ms(name):
        return _fmt_ms(med[name]) if name in med else "-"

    def ratio(which, a="onednn", b="xla"):
        return f"**{paired_ratio(times, f'{a} {which}', f'{b} {which}'):.2f}**" if f"{a} fwd" in med else "-"

    diff = "-"
    if "onednn fwd" in med:
        # Relative to the norm: a max-abs difference would mostly count ReLU masks and pooling routes that
        # the two roundings send either way, each a valid (sub)gradient.
        rel = lambda a, r: float(jnp.linalg.norm(a - r) / jnp.linalg.norm(r))  # noqa: E731
        pairs = [(outputs["onednn fwd"], outputs["xla fwd"]),
                 *zip(outputs["onednn bwd"], outputs["xla bwd"], strict=True)]
        diff = " / ".join(f"{rel(a, r):.1e}" for a, r in pairs)
    return (f"| {names} | {batch} x {s}x{s}, {i}->{o} | {gflop:.1f} / {gflop + gflop_bwd:.1f} "
            f"| {ms('xla fwd')} | {ms('onednn fwd')} | {ratio('fwd')} | {ms('xla bwd')} | {ms('onednn bwd')} "
            f"| {ratio('bwd')} | {ms('winograd fwd')} | {ratio('fwd', 'winograd', 'onednn')} "
            f"| {ms('winograd bwd')} | {ratio('bwd', 'winograd', 'onednn')} | {diff} |")


def run_float32(args) -> list[str]:
    rng = np.random.default_rng(0)
    return _per_size(
        args.float32_sizes, FLOAT32_HEADER,
        lambda size: (f"### float32 per layer, oneDNN against XLA and Winograd against oneDNN ({size}^2 crops, batch {args.float32_batch}, "
                      f"{args.threads} threads; ratios: median of the per-round ratios)"),
        lambda size: (_float32_row(rng, names, spec, args.float32_batch, s, upsample, pool, argnums,
                                   args.float32_repeats)
                      for names, spec, s, upsample, pool, _, argnums in float32_layers(size)))


def run_train_step(args, torch) -> list[str]:
    """Training's own float32 step (`benchmarks.jax_side.JaxSide.train_step`) with the float32 layers
    routed as `networks.float32_route` says, the same step with every layer on XLA (the route traced as
    None), and the PyTorch port's step under ``torch.compile`` (as `benchmarks.run` times it), interleaved;
    ratios are medians of the per-round ratios."""
    from adain_jax.model import networks
    from benchmarks.jax_side import JaxSide
    from benchmarks.torch_side import TorchSide

    vgg_sd, dec_sd = fixtures.state_dicts()
    n, size = args.train_batch, args.train_size
    content, style = (np.round(fixtures.images(seed, n, size) * 255).astype(np.uint8) for seed in (5, 6))

    def jax_step(routed: bool):
        step = JaxSide(vgg_sd, dec_sd).train_step()

        def run():
            if routed:
                return step(content, style)
            route = networks.float32_route
            networks.float32_route = lambda spec: None  # read while the step is traced (its first call)
            try:
                return step(content, style)
            finally:
                networks.float32_route = route
        return run

    fns = {"routed": jax_step(True), "xla": jax_step(False)}
    if not args.no_torch_compile:
        side = TorchSide(vgg_sd, dec_sd, "compile")
        step = side.train_step()
        c, s = (side.inputs(x.astype(np.float32) / np.float32(255)) for x in (content, style))
        fns["compile"] = lambda: step(c, s)
    load = os.getloadavg()[0]
    times, losses = interleaved(fns, args.train_repeats)
    med = {name: statistics.median(t) for name, t in times.items()}
    title = (f"### float32 train step, batch {n} at {size}^2, {args.threads} threads (load {load:.1f} at start, "
             f"{os.getloadavg()[0]:.1f} at end)")
    lines = [title, "",
             "| step | median ms | / XLA-only step | / torch.compile | first-step loss |", "|---|---|---|---|---|"]
    for name in fns:
        to_compile = f"{paired_ratio(times, name, 'compile'):.2f}" if "compile" in fns else "-"
        lines.append(f"| {name} | {_fmt_ms(med[name])} | {paired_ratio(times, name, 'xla'):.2f} | {to_compile} "
                     f"| {float(losses[name]):.6g} |")
    print("\n".join(lines), file=sys.stderr, flush=True)
    return [*lines, ""]


# --------------------------------------------------------------------------------------------------
# Whole network
# --------------------------------------------------------------------------------------------------

NETWORK_HEADER = (
    "| size | adain-jax f32 ms | oneDNN bf16 ms | PyTorch bf16 ms | GFLOP/s oneDNN / PyTorch "
    "| **oneDNN / PyTorch bf16** | max abs vs f32: oneDNN / PyTorch |"
)


def _network_row(torch, weights, torch_side, size: int, repeats: int, with_f32: bool) -> str:
    import jax

    import adain_jax
    from benchmarks import flops

    content, style = fixtures.images(1, 1, size), fixtures.images(2, 1, size)
    cj, sj = jax.device_put(content), jax.device_put(style)
    ct, st = torch_side.inputs(content), torch_side.inputs(style)

    def torch_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch_side.stylize(ct, st)

    fns = {"onednn": lambda: stylize_bf16(weights, cj, sj).block_until_ready(), "torch": torch_bf16}
    if with_f32:
        fns["f32"] = lambda: adain_jax.stylize(weights, cj, sj).block_until_ready()
    times, outputs = interleaved(fns, repeats)
    reference = np.asarray(outputs["f32"] if "f32" in outputs else adain_jax.stylize(weights, cj, sj), np.float64)
    diff_onednn = float(np.max(np.abs(np.asarray(outputs["onednn"], np.float64) - reference)))
    diff_torch = float(np.max(np.abs(torch_side.to_numpy(outputs["torch"].float()).astype(np.float64) - reference)))
    med = {name: statistics.median(t) for name, t in times.items()}
    gflop = flops.stylize_flops(size) / 1e9
    return (f"| {size}^2 | {_fmt_ms(med['f32']) if 'f32' in med else '-'} | {_fmt_ms(med['onednn'])} "
            f"| {_fmt_ms(med['torch'])} | {gflop / med['onednn']:.0f} / {gflop / med['torch']:.0f} "
            f"| **{paired_ratio(times, 'onednn', 'torch'):.2f}** | {diff_onednn:.3f} / {diff_torch:.3f} |")


def run_network(args, torch) -> list[str]:
    from benchmarks.jax_side import JaxSide
    from benchmarks.torch_side import TorchSide

    vgg_sd, dec_sd = fixtures.state_dicts()
    weights = JaxSide(vgg_sd, dec_sd).weights
    torch_side = TorchSide(vgg_sd, dec_sd, "channels_last")
    title = (f"### Whole network: encoder + AdaIN + decoder, content and style of one size, batch 1, "
             f"{args.threads} threads")
    return _table(title, NETWORK_HEADER,
                  (_network_row(torch, weights, torch_side, size, args.repeats, not args.no_f32)
                   for size in args.sizes))


# --------------------------------------------------------------------------------------------------
# Backward per layer (training shapes)
# --------------------------------------------------------------------------------------------------


def backward_shapes(size: int) -> list[tuple[str, int, int, int, int]]:
    """(layer names, padded input size, kernel size, in, out) of every distinct convolution a training
    step at size^2 crops differentiates: the encoder's 3x3 layers up to relu4_1 on the reflection-padded
    input (the generated image's encoding), and the decoder's, each layer after an upsampling as the
    2x2 convolution of its four phases over the edge-padded low-resolution input (`conv2d(upsample=True)`)."""
    from adain_jax.model import architecture

    rows: dict[tuple, list[str]] = {}
    s = size
    for spec in architecture.ENCODER:
        if spec.kernel_size == 3:
            rows.setdefault((s + 2, 3, spec.in_channels, spec.out_channels), []).append(f"enc {spec.name}")
        if spec.pool_after:
            s = -(-s // 2)
    s, upsample_input = -(-size // architecture.DOWNSAMPLE_FACTOR), False
    for spec in architecture.DECODER:
        if upsample_input:
            key = (s // 2 + 1, 2, spec.in_channels, 4 * spec.out_channels)
            rows.setdefault(key, []).append(f"dec {spec.name} (phases)")
        else:
            rows.setdefault((s + 2, 3, spec.in_channels, spec.out_channels), []).append(f"dec {spec.name}")
        if spec.upsample_after:
            s *= 2
        upsample_input = spec.upsample_after
    return [(", ".join(names), *key) for key, names in rows.items()]


def _xla_backward(x, k, g):
    """dx, dkernel, dbias of a 'valid' convolution by XLA (its transposed convolutions), in x's dtype."""
    import jax

    def forward(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision=jax.lax.Precision.HIGHEST)

    dx, dk = jax.vjp(forward, x, k)[1](g)
    return dx, dk, g.sum(axis=(0, 1, 2))


def _old_backward(x, k, g):
    """What `conv2d`'s gradient ran before oneDNN's backward kernels: XLA float32 at the bfloat16 values."""
    import jax.numpy as jnp

    return _xla_backward(x.astype(jnp.float32), k.astype(jnp.float32), g.astype(jnp.float32))


def _onednn_backward(x, k, g):
    from adain_jax.onednn import conv

    return (conv.backward_data(g, k), *conv.backward_weights(x, g))


BACKWARD_HEADER = (
    "| layers | batch x HxW (padded), kernel, in->out | GFLOP | oneDNN bf16 ms | old: XLA f32 at bf16 ms "
    "| XLA f32 ms | **oneDNN / old** | oneDNN / f32 | GFLOP/s oneDNN / old / f32 | max rel. diff vs old |"
)


def _backward_row(rng, names: str, batch: int, p: int, k: int, i: int, o: int, repeats: int) -> str:
    import jax
    import jax.numpy as jnp

    from adain_jax import onednn

    q = p - k + 1
    x32 = jnp.asarray(rng.uniform(0, 1, (batch, p, p, i)), jnp.float32)
    k32 = jnp.asarray(rng.standard_normal((k, k, i, o)) / np.sqrt(k * k * i), jnp.float32)
    g32 = jnp.asarray(rng.standard_normal((batch, q, q, o)), jnp.float32)
    x16, k16, g16 = (a.astype(jnp.bfloat16) for a in (x32, k32, g32))
    f32, old = jax.jit(_xla_backward), jax.jit(_old_backward)
    fns = {"old": lambda: jax.block_until_ready(old(x16, k16, g16)),
           "f32": lambda: jax.block_until_ready(f32(x32, k32, g32))}
    use_onednn = onednn.available()
    if use_onednn:
        fast = jax.jit(_onednn_backward)
        fns["onednn"] = lambda: jax.block_until_ready(fast(x16, k16, g16))
    times, outputs = interleaved(fns, repeats)
    med = {name: statistics.median(t) for name, t in times.items()}
    gflop = 2 * 2 * k * k * i * o * q * q * batch / 1e9  # data + weights
    rates = " / ".join(f"{gflop / med[name]:.0f}" if name in med else "-" for name in ("onednn", "old", "f32"))
    diff = "-"
    if use_onednn:  # the same gradients, to the cotangent's one bfloat16 rounding (g16 is already rounded)
        diff = " / ".join(f"{float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))):.1e}"
                          for a, b in zip(outputs["onednn"], outputs["old"], strict=True))

    def ratio(other: str) -> str:
        return f"{paired_ratio(times, 'onednn', other):.2f}" if use_onednn else "-"

    return (f"| {names} | {batch} x {p}x{p}, {k}x{k}, {i}->{o} | {gflop:.2f} "
            f"| {_fmt_ms(med['onednn']) if use_onednn else '-'} | {_fmt_ms(med['old'])} | {_fmt_ms(med['f32'])} "
            f"| **{ratio('old')}** | {ratio('f32')} | {rates} | {diff} |")


def run_backward(args) -> list[str]:
    rng = np.random.default_rng(0)
    return _per_size(
        args.backward_sizes, BACKWARD_HEADER,
        lambda size: (f"### Backward per layer: dx, dkernel and dbias ({size}^2 crops, batch {args.backward_batch}, "
                      f"{args.threads} threads; max rel. diff: dx / dkernel / dbias)"),
        lambda size: (_backward_row(rng, names, args.backward_batch, p, k, i, o, args.backward_repeats)
                      for names, p, k, i, o in backward_shapes(size)))


def _onednn_isa() -> str:
    from adain_jax import onednn

    try:
        return onednn.isa()
    except onednn.Unavailable as e:
        return f"- ({e})"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_layers", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="cores to use (default: all available)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="whole-network image sizes")
    parser.add_argument("--layer-size", type=int, default=512, help="content size of the per-layer table")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per network size")
    parser.add_argument("--layer-repeats", type=int, default=7, help="interleaved rounds per layer")
    parser.add_argument("--skip-layers", action="store_true", help="only the whole network")
    parser.add_argument("--skip-network", action="store_true", help="only the per-layer table")
    parser.add_argument("--no-f32", action="store_true", help="leave out adain-jax float32 (faster run)")
    parser.add_argument("--backward-sizes", type=int, nargs="+", default=[128, 256],
                        help="crop sizes of the per-layer backward table")
    parser.add_argument("--backward-batch", type=int, default=8, help="batch of the per-layer backward table")
    parser.add_argument("--backward-repeats", type=int, default=5, help="interleaved rounds per backward layer")
    parser.add_argument("--skip-backward", action="store_true", help="leave out the per-layer backward table")
    parser.add_argument("--float32-sizes", type=int, nargs="+", default=[256, 128],
                        help="crop sizes of the float32 per-layer table")
    parser.add_argument("--float32-batch", type=int, default=8, help="batch of the float32 per-layer table")
    parser.add_argument("--float32-repeats", type=int, default=3, help="interleaved rounds per float32 layer")
    parser.add_argument("--skip-float32", action="store_true", help="leave out the float32 per-layer table")
    parser.add_argument("--only-float32", action="store_true", help="only the float32 per-layer table")
    parser.add_argument("--train-step", action="store_true",
                        help="also time the whole float32 train step: routed, XLA only, torch.compile")
    parser.add_argument("--train-size", type=int, default=256, help="crop size of the train step")
    parser.add_argument("--train-batch", type=int, default=8, help="batch of the train step")
    parser.add_argument("--train-repeats", type=int, default=3, help="interleaved rounds of the train step")
    parser.add_argument("--no-torch-compile", action="store_true", help="leave torch.compile out of the train step")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.threads = fixtures.configure_threads(args.threads)  # before JAX and PyTorch start their pools
    import torch

    import adain_jax  # noqa: F401  (sets its XLA flags before JAX's backend starts)
    from adain_jax import onednn
    from benchmarks import flops

    torch.set_num_threads(args.threads)
    cpu = flops.cpu_description()
    units = ", ".join(f for f in onednn.CPU_FLAGS if f in cpu["flags"]) or "none"
    header = [(f"# convolutions per layer: {cpu['model']}, {args.threads} threads, bf16 units: {units}; "
               f"oneDNN: {onednn.reason('float32')}, {onednn.reason()}; oneDNN ISA {_onednn_isa()}; "
               f"XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}; "
               f"torch {torch.__version__}; load {os.getloadavg()[0]:.1f} at start"), ""]
    sections = []
    if not args.skip_float32:
        sections += run_float32(args)
    if args.train_step:
        sections += run_train_step(args, torch)
    if args.only_float32:
        args.skip_layers = args.skip_network = args.skip_backward = True
    if not args.skip_layers:
        sections += [*run_layers(args, torch), ""]
    if not args.skip_network:
        sections += [*run_network(args, torch), ""]
    if not args.skip_backward:
        sections += run_backward(args)
    print("\n".join(header + sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
