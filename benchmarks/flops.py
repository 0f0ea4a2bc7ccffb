"""Nominal FLOP counts of the AdaIN networks and an estimate of the machine's peak.

FLOPs are those of the reference network (the PyTorch port): 2 x multiply-adds of every
convolution, nothing for padding, pooling, ReLU or the statistics (under 0.5% together). Both
frameworks are credited with the same count, so GFLOP/s compare like with like; adain-jax's
decoder does fewer multiply-adds than this (docs/performance.md), so its figure is "effective".
"""

from __future__ import annotations

import os
import platform
import time

from adain_jax.model import architecture


def _conv_flops(spec: architecture.ConvSpec, h: int, w: int, n: int) -> int:
    return 2 * n * h * w * spec.in_channels * spec.out_channels * spec.kernel_size ** 2


def encoder_flops(h: int, w: int, n: int = 1) -> int:
    total = 0
    for spec in architecture.ENCODER:
        total += _conv_flops(spec, h, w, n)
        if spec.pool_after:
            h, w = -(-h // 2), -(-w // 2)
    return total


def decoder_flops(h: int, w: int, n: int = 1) -> int:
    """For an image of h x w (the decoder starts from ceil(h / 8) x ceil(w / 8) features)."""
    f = architecture.DOWNSAMPLE_FACTOR
    h, w = -(-h // f), -(-w // f)
    total = 0
    for spec in architecture.DECODER:
        total += _conv_flops(spec, h, w, n)
        if spec.upsample_after:
            h, w = 2 * h, 2 * w
    return total


def stylize_flops(size: int, n: int = 1, include_style: bool = True) -> int:
    per_image = encoder_flops(size, size) * (2 if include_style else 1) + decoder_flops(size, size)
    return n * per_image


def train_step_flops(size: int, n: int) -> int:
    """Forward: encode style, content and the decoded image, decode (3 E + D). Backward: input
    gradients through the encoder (E), input and weight gradients through the decoder (2 D)."""
    e, d = encoder_flops(size, size, n), decoder_flops(size, size, n)
    return 4 * e + 3 * d


def cpu_description() -> dict:
    from adain_jax import cpuinfo

    mhz = cpuinfo.field("cpu MHz")
    return {"machine": platform.machine(), "model": cpuinfo.name(), "mhz": float(mhz) if mhz else None,
            "flags": cpuinfo.flags()}


def theoretical_peak_gflops(cores: int, cpu: dict) -> dict:
    """cores x FMA units x float32 lanes x 2 flops x clock.

    Lanes from the ISA flags (AVX-512: 16, AVX2: 8, else 4); 2 FMA units per core (Intel server
    cores since Skylake-SP, AMD Zen); the clock is /proc/cpuinfo's "cpu MHz", which on a VM is the
    nominal clock (turbo, if any, would raise the real peak).
    """
    flags = cpu.get("flags", set())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma_units = 2 if ("fma" in flags or "avx512f" in flags) else 1
    ghz = (cpu.get("mhz") or 0.0) / 1000.0
    return {"gflops": cores * fma_units * lanes * 2 * ghz, "cores": cores, "fma_units": fma_units,
            "fp32_lanes": lanes, "ghz": ghz}


def measured_gemm_gflops(size: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Best GEMM rate of PyTorch's CPU matmul on this machine (MKL sgemm in float32, oneDNN in
    bfloat16), threads as configured."""
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    a = torch.rand(size, size).to(torch_dtype)
    b = torch.rand(size, size).to(torch_dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best / 1e9


def measured_jax_dot_gflops(size: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Best rate of a jitted ``jnp.dot`` of two size x size matrices in ``dtype`` (after a warm-up).

    bfloat16 operands accumulate in float32 (``preferred_element_type``), as the bfloat16
    convolutions do: XLA:CPU's bfloat16-in, bfloat16-out dot takes a path several times slower
    (about 110 against 440-580 GFLOP/s on the 2-core AMX Xeon), which would not be a peak.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.uniform(-1, 1, (size, size)), dtype) for _ in range(2))
    dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best / 1e9


def measured_matmul_peaks(size: int = 2048, repeats: int = 5) -> dict:
    """{precision: {"jax": jnp.dot GFLOP/s, "torch": torch.mm GFLOP/s, "peak": the better}} for
    float32 and bfloat16: the measured peak a row's GFLOP/s is a share of."""
    peaks = {}
    for dtype in ("float32", "bfloat16"):
        rates = {"jax": measured_jax_dot_gflops(size, repeats, dtype),
                 "torch": measured_gemm_gflops(size, repeats, dtype)}
        peaks[dtype] = {**rates, "peak": max(rates.values())}
    return peaks


def better_peaks(a: dict, b: dict) -> dict:
    """Per precision and library, the higher of two `measured_matmul_peaks` (load from other processes
    only ever lowers a rate)."""
    out = {}
    for dtype in a:
        rates = {lib: max(a[dtype][lib], b[dtype][lib]) for lib in ("jax", "torch")}
        out[dtype] = {**rates, "peak": max(rates.values())}
    return out


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
