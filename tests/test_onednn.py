"""adain_jax.onednn: the bfloat16 and float32 convolutions through oneDNN, their XLA fallback, the
float32 layers' routing, and the build.

Both paths are checked against a float64 numpy convolution of the same bfloat16-rounded operands,
with a bound from rounding analysis alone (any summation order, FMA or not, so no CPU's rounding is
assumed; helpers.float32_sum_error and helpers.rounding_error): a float32 sum of K terms is within
gamma_K * sum|terms| of the exact sum (gamma_K = K u / (1 - K u), u = 2^-24), ReLU does not increase
a difference, and the final rounding to bfloat16 adds at most 2^-8 of the magnitude. Two results of
different programs (jit or not, vmapped or not) are compared the same way, each against the float64
result, since XLA's bfloat16 path may round them differently (by a bfloat16 ulp, 2^-7 of the value).

Gradients are checked the same way: against float64 gradients of the same bfloat16 operands, written
here without the library, with bounds from the roundings of the path that runs (see
GRADIENT_ROUNDINGS), in every mode of the forward pass, under jit, vmap and a batch-sharded mesh.

The library is built here if it is missing or stale (`python -m adain_jax.onednn.build`); a machine
that cannot build it fails these tests with the builder's reason. On a CPU without AVX512-BF16 or
AMX-BF16 the oneDNN path is off by design, and ``ADAIN_JAX_ONEDNN=0`` turns it off on any CPU: the
tests then assert that it says so and check conv2d, which is the XLA path, with the same bounds.

float32 (``dtype=jnp.float32``) is checked the same way, at the float32 operands themselves: a
float32 dot product of K terms is within gamma_K * sum|terms| of the exact one (products rounded or
fused, any order), on both paths and every CI CPU (the float32 path needs only AVX2, which they all
have), with no bfloat16 rounding anywhere.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ROOT, U_BF16, float32_sum_error, rounding_error

from adain_jax import cpuinfo, onednn
from adain_jax.io import files
from adain_jax.onednn import build, conv

HAS_BF16_UNITS = bool(cpuinfo.flags() & set(onednn.CPU_FLAGS))
# ADAIN_JAX_ONEDNN=0 switches the path off on any CPU (the values adain_jax.onednn reads as off): the
# module then checks the XLA fallback, as it does on a CPU without bfloat16 units.
DISABLED = os.environ.get(onednn.ENV, "").strip().lower() in ("0", "false", "no", "off")
# ONEDNN_MAX_CPU_ISA holds oneDNN below the CPU's instructions, so an AVX-512 machine can run this module
# as a stand-in for an AVX2-only CPU (AMD Zen 3): limits below AVX512_CORE_BF16 leave no bfloat16 kernels.
ISA_LIMIT = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
NO_BF16_ISA = ISA_LIMIT in ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")
PATH_ON = HAS_BF16_UNITS and not DISABLED and not NO_BF16_ISA
# The float32 path needs AVX2, which every CPU CI runs on has (Intel with AMX, AMD Zen 4 and Zen 3).
F32_ON = not DISABLED and ISA_LIMIT not in ("SSE41", "AVX")
F32 = jnp.float32


@pytest.fixture(scope="module", autouse=True)
def library():
    try:
        build.build()
    except build.CannotBuild as e:
        pytest.fail(f"the oneDNN library could not be built here: {e}")
    assert build.up_to_date()


def _bf16(a) -> np.ndarray:
    return np.asarray(jnp.asarray(a, jnp.bfloat16).astype(jnp.float32), np.float64)


def _rounded(a, dtype=jnp.bfloat16) -> np.ndarray:
    """``a`` as the call sees it: rounded to ``dtype`` (bfloat16, or float32), in float64."""
    return _bf16(a) if dtype == jnp.bfloat16 else np.asarray(np.asarray(a, np.float32), np.float64)


def _on(dtype) -> bool:
    return PATH_ON if dtype == jnp.bfloat16 else F32_ON


def _pad(x: np.ndarray, padding: str) -> np.ndarray:
    return x if padding == "valid" else np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=padding)


def _pool(a: np.ndarray) -> np.ndarray:
    """Ceil-mode 2x2 max-pool, written independently of the library (pad with -inf, reshape)."""
    n, h, w, c = a.shape
    a = np.pad(a, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    return a.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c).max(axis=(2, 4))


def exact_and_bound(x, kernel, bias, relu, padding, pool=False, dtype=jnp.bfloat16):
    """float64 result of the operands (the input and kernel rounded to ``dtype`` first, as the call
    does, unless given as float64) and the per-element error bound of either path: the float32 sum's,
    and for bfloat16 the final rounding's.

    Pooling takes maxima, which move by no more than the largest error in their window."""
    as_given = lambda a: a if isinstance(a, np.ndarray) and a.dtype == np.float64 else _rounded(a, dtype)  # noqa: E731
    x, kernel, bias = _pad(as_given(x), padding), as_given(kernel), np.asarray(bias, np.float64)
    kh, kw, c, _ = kernel.shape
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = np.broadcast_to(bias, (x.shape[0], oh, ow, *bias.shape)).copy()
    s = np.broadcast_to(np.abs(bias), y.shape).copy()
    for i in range(kh):
        for j in range(kw):
            window = x[:, i:i + oh, j:j + ow]
            y += np.einsum("nhwc,co->nhwo", window, kernel[i, j])
            s += np.einsum("nhwc,co->nhwo", np.abs(window), np.abs(kernel[i, j]))
    gamma = float32_sum_error(kh * kw * c + 1)
    y = np.maximum(y, 0.0) if relu else y
    bound = gamma * s + (U_BF16 * (np.abs(y) + gamma * s) if dtype == jnp.bfloat16 else 0.0)
    return (_pool(y), _pool(bound)) if pool else (y, bound)


def _operands(seed, n, h, w, c, o, k=3, dtype=jnp.bfloat16):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kernel = (rng.standard_normal((k, k, c, o)) / np.sqrt(k * k * c)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, o).astype(np.float32)
    return jnp.asarray(x, dtype), jnp.asarray(kernel), jnp.asarray(bias)


def _assert_within(out, exact, bound, what):
    out = np.asarray(jnp.asarray(out).astype(jnp.float32), np.float64)
    assert out.shape == exact.shape, what
    excess = np.abs(out - exact) - bound
    assert excess.max() <= 0, f"{what}: exceeds the rounding bound by {excess.max():.3g}"
    # The bound is tight enough to catch a real error (a lost tap or bias would be ~0.1 here).
    assert bound.max() < 0.05 * max(np.abs(exact).max(), 1.0), what


def test_path_matches_the_cpu():
    assert onednn.available() == PATH_ON, onednn.reason()
    assert onednn.available("float32") == F32_ON, onednn.reason("float32")
    assert onednn.register() == (not DISABLED)  # the library loads on every CI CPU unless switched off
    if DISABLED:
        assert f"disabled by {onednn.ENV}" in onednn.reason()
        assert f"disabled by {onednn.ENV}" in onednn.reason("float32")
    else:
        assert onednn.isa().startswith(("avx2", "avx512")), onednn.isa()
        # The Python side calls the handlers with the attributes of its own interface version.
        assert onednn._library().adain_onednn_abi() == onednn.ABI
        if not HAS_BF16_UNITS:
            assert "AVX512-BF16" in onednn.reason()
    with pytest.raises(ValueError, match="dtype must be one of"):
        onednn.available("float16")


# (n, h, w, c, o, kernel size, relu, padding, pool): odd sizes, channels that fill no vector, a
# 1-row band, odd outputs to pool (ceil mode) and bands that must split on an even row.
CASES = [
    (1, 9, 11, 5, 7, 3, True, "valid", False),
    (2, 7, 13, 16, 3, 3, False, "valid", False),
    (3, 17, 6, 64, 33, 3, True, "reflect", False),
    (1, 5, 9, 3, 64, 3, False, "reflect", False),
    (2, 11, 7, 24, 20, 2, True, "edge", False),
    (1, 3, 3, 130, 17, 3, True, "valid", False),
    (1, 15, 9, 8, 16, 3, True, "reflect", True),
    (2, 6, 7, 5, 9, 3, False, "reflect", True),
    (1, 41, 3, 4, 8, 3, True, "valid", True),
]


@pytest.mark.parametrize("dtype", [jnp.bfloat16, F32], ids=["bf16", "f32"])
@pytest.mark.parametrize("n,h,w,c,o,k,relu,padding,pool", CASES)
def test_both_paths_within_rounding_of_float64(n, h, w, c, o, k, relu, padding, pool, dtype):
    x, kernel, bias = _operands(hash((n, h, w, c, o)) % 2 ** 32, n, h, w, c, o, k, dtype)
    exact, bound = exact_and_bound(x, kernel, bias, relu, padding, pool, dtype)
    options = {"relu": relu, "padding": padding, "pool": pool, "dtype": dtype}
    call = jax.jit(functools.partial(conv.conv2d, **options))
    assert (f"@{onednn.TARGET}" in call.lower(x, kernel, bias).as_text()) == _on(dtype)
    fast = call(x, kernel, bias)
    assert fast.dtype == dtype
    _assert_within(fast, exact, bound, "conv2d")
    ref = conv.reference_conv2d(x, kernel, bias, **options)
    _assert_within(ref, exact, bound, "reference_conv2d")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, F32], ids=["bf16", "f32"])
@pytest.mark.parametrize("n,h,w,c,o,relu", [(1, 5, 7, 6, 5, True), (2, 9, 4, 16, 12, False), (1, 1, 3, 3, 4, True)])
def test_upsample_is_the_3x3_convolution_of_the_reflection_padded_upsampled_input(n, h, w, c, o, relu, dtype):
    from adain_jax.model import networks

    x, kernel, bias = _operands(7, n, h, w, c, o, dtype=dtype)
    up = np.repeat(np.repeat(_rounded(x, dtype), 2, axis=1), 2, axis=2)
    # Exact 3x3 convolution of the upsampled image with the float32 kernel (not rounded: the call
    # rounds the phase kernels, sums of up to four taps, to bfloat16: at most 2^-8 of them, plus
    # their float32 sums), so the bound gains (2^-8 + gamma_4) * sum|x||k| on top of the plain one,
    # which grows with the rounded kernels' magnitudes (by at most two factors of 1 + 2^-8). In
    # float32 only the float32 sums of the taps remain: gamma_4.
    u = U_BF16 if dtype == jnp.bfloat16 else 0.0
    growth = 1 + (U_BF16 if dtype == jnp.bfloat16 else float32_sum_error(4))
    exact, bound = exact_and_bound(up, np.asarray(kernel, np.float64), bias, relu, "reflect", dtype=dtype)
    s, _ = exact_and_bound(np.abs(up), np.abs(np.asarray(kernel, np.float64)), np.abs(bias), False, "reflect",
                           dtype=dtype)
    bound = bound * growth ** 2 + growth * (u + float32_sum_error(4)) * s
    options = {"relu": relu, "padding": "edge", "upsample": True, "dtype": dtype}
    phases, biases = networks.phase_kernels(kernel), jnp.tile(bias, 4)
    fast = jax.jit(functools.partial(conv.conv2d, **options))(x, phases, biases)
    assert fast.shape == (n, 2 * h, 2 * w, o) and fast.dtype == dtype
    _assert_within(fast, exact, bound, "conv2d upsample")
    _assert_within(conv.reference_conv2d(x, phases, biases, **options), exact, bound, "reference_conv2d upsample")


def test_bfloat16_bias_and_float32_input_are_accepted():
    x, kernel, bias = _operands(1, 1, 6, 6, 8, 8)
    exact, bound = exact_and_bound(x, kernel, _bf16(bias), True, "valid")
    out = conv.conv2d(x.astype(jnp.float32), kernel.astype(jnp.bfloat16), bias.astype(jnp.bfloat16), relu=True)
    _assert_within(out, exact, bound, "conv2d, bf16 bias")


def test_vmap_over_images_and_over_kernels():
    x, kernel, bias = _operands(2, 2, 8, 10, 12, 9)
    xs = jnp.stack([x, -x, 0.5 * x])  # (3, 2, 8, 10, 12)
    f = jax.jit(jax.vmap(lambda x: conv.conv2d(x, kernel, bias, relu=True, padding="reflect")))
    out = f(xs)
    assert out.shape == (3, 2, 8, 10, 9)
    for b in range(3):
        _assert_within(out[b], *exact_and_bound(xs[b], kernel, bias, True, "reflect"), f"vmap image {b}")
    kernels = jnp.stack([kernel, -kernel, 2 * kernel])
    biases = jnp.stack([bias, bias + 1, -bias])
    g = jax.jit(jax.vmap(lambda x, k, b: conv.conv2d(x, k, b, relu=False)))
    out = g(xs, kernels, biases)
    for b in range(3):
        _assert_within(out[b], *exact_and_bound(xs[b], kernels[b], biases[b], False, "valid"), f"vmap kernel {b}")
    # Only the kernel batched (in_axes), the image shared.
    h = jax.vmap(lambda k: conv.conv2d(x, k, bias, relu=True))
    out = h(kernels)
    for b in range(3):
        _assert_within(out[b], *exact_and_bound(x, kernels[b], bias, True, "valid"), f"vmap shared image {b}")


def test_independent_calls_in_one_program_give_the_results_of_separate_calls():
    # XLA may run independent custom calls at the same time on its thread pool; each call's
    # result depends only on its own shapes and operands.
    a, ka, ba = _operands(4, 2, 12, 9, 8, 16)
    b, kb, bb = _operands(5, 1, 7, 15, 16, 8)

    def both(a, b):
        return (conv.conv2d(a, ka, ba, relu=True, padding="reflect", pool=True),
                conv.conv2d(b, kb, bb, relu=False, padding="edge"))

    ya, yb = jax.jit(both)(a, b)
    _assert_within(ya, *exact_and_bound(a, ka, ba, True, "reflect", pool=True), "first call")
    _assert_within(yb, *exact_and_bound(b, kb, bb, False, "edge"), "second call")
    if onednn.available():  # the handler's result is a function of its own call; XLA's may vary with the program
        assert np.array_equal(np.asarray(ya), np.asarray(conv.conv2d(a, ka, ba, relu=True, padding="reflect",
                                                                     pool=True)))
        assert np.array_equal(np.asarray(yb), np.asarray(conv.conv2d(b, kb, bb, relu=False, padding="edge")))


def test_bad_input_names_the_problem():
    x, kernel, bias = _operands(3, 1, 6, 6, 4, 5)
    with pytest.raises(ValueError, match="do not fit"):
        conv.conv2d(x, kernel[:, :, :3], bias, relu=True)
    with pytest.raises(ValueError, match="padding must be"):
        conv.conv2d(x, kernel, bias, relu=True, padding="same")
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv.conv2d(x[:, :2], kernel, bias, relu=True)
    with pytest.raises(ValueError, match="NHWC"):
        conv.conv2d(x[0], kernel, bias, relu=True)
    with pytest.raises(ValueError, match="upsample=True needs"):
        conv.conv2d(x, kernel, bias, relu=True, padding="reflect", upsample=True)


FALLBACK_SCRIPT = """
import warnings, numpy as np, jax, jax.numpy as jnp
warnings.simplefilter("always")
from adain_jax import onednn
from adain_jax.onednn import conv
assert not onednn.available()
rng = np.random.default_rng(0)
for shape in ((1, 6, 7, 5), (2, 9, 4, 5)):
    x = jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal((3, 3, 5, 6)), jnp.float32)
    b = jnp.asarray(rng.standard_normal(6), jnp.float32)
    out = jax.jit(lambda x: conv.conv2d(x, k, b, relu=True, padding="reflect", pool=True))(x)
    ref = conv.reference_conv2d(x, k, b, relu=True, padding="reflect", pool=True)
    assert out.dtype == jnp.bfloat16 and np.array_equal(np.asarray(out), np.asarray(ref))
    x = x.astype(jnp.float32)
    out = jax.jit(lambda x: conv.conv2d(x, k, b, relu=True, padding="reflect", pool=True, dtype=jnp.float32))(x)
    ref = conv.reference_conv2d(x, k, b, relu=True, padding="reflect", pool=True, dtype=jnp.float32)
    assert out.dtype == jnp.float32 and np.allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)
assert not onednn.available("float32")
print("fallback ok:", onednn.reason(), "/", onednn.reason("float32"))
"""


def test_fallback_forced_by_env_gives_xla_result_with_one_notice():
    env = dict(os.environ, **{onednn.ENV: "0"})
    proc = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"fallback ok: disabled by {onednn.ENV}=0 / disabled by {onednn.ENV}=0" in proc.stdout
    # One notice, for bfloat16: float32 falls back to XLA's float32, the default path, silently.
    assert proc.stderr.count("adain_jax.onednn:") == 1, proc.stderr


def test_build_command_line_is_idempotent_and_never_breaks_an_install():
    run = lambda *args, **env: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "adain_jax.onednn.build", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, **env))
    proc = run()
    assert proc.returncode == 0 and proc.stdout.strip().endswith("is up to date"), proc.stdout + proc.stderr
    before = onednn.LIBRARY.stat().st_mtime_ns
    # A compiler that fails: one line saying why, exit 0 (1 with --strict), the built library kept.
    proc = run("--force", CXX="/bin/false")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1 and "not built" in proc.stdout, proc.stdout
    assert run("--force", "--strict", CXX="/bin/false").returncode == 1
    assert onednn.LIBRARY.stat().st_mtime_ns == before
    assert not list(onednn.PACKAGE_DIR.glob(files.temporary_name(onednn.LIBRARY, "*").name))  # no temporary left


def test_build_without_onednn_packages_says_why_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(onednn, "DNNL_DISTRIBUTION", "no-such-onednn-distribution")
    assert build.main(["--force"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not built: no-such-onednn-distribution (libdnnl.so.3) is not installed" in out
    assert build.main(["--force", "--strict"]) == 1


@pytest.mark.parametrize("relu,padding,pool,upsample,k", [(True, "reflect", False, False, 3),
                                                          (True, "reflect", True, False, 3),
                                                          (False, "reflect", False, False, 3),
                                                          (True, "edge", False, True, 2)])
def test_gradients_match_jax_differentiating_the_xla_path(relu, padding, pool, upsample, k):
    """The oneDNN call's own backward rule against JAX's derivative of `reference_conv2d` (XLA's
    bfloat16 convolution, whose backward pass rounds to bfloat16: differences of a few 2^-8)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 9, 7, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 8, 16)) / np.sqrt(k * k * 8), jnp.float32)
    bias = jnp.asarray(rng.uniform(-0.5, 0.5, 16), jnp.float32)
    options = {"relu": relu, "padding": padding, "pool": pool, "upsample": upsample}
    weights = jnp.asarray(rng.standard_normal(conv._check(x, kernel, bias, padding, pool, upsample)), jnp.float32)

    def loss(layer, *operands):
        return jnp.sum(layer(*operands, **options).astype(jnp.float32) * weights)

    got = jax.jit(jax.grad(functools.partial(loss, conv.conv2d), argnums=(0, 1, 2)))(x, kernel, bias)
    want = jax.grad(functools.partial(loss, conv.reference_conv2d), argnums=(0, 1, 2))(x, kernel, bias)
    for name, g, w in zip(("input", "kernel", "bias"), got, want, strict=True):
        assert g.dtype == jnp.float32 and g.shape == w.shape, name
        # A lost ReLU mask, tap or pooling route would be off by tens of percent.
        assert float(jnp.max(jnp.abs(g - w)) / jnp.max(jnp.abs(w))) < 2e-2, name


def exact_relu_sum_input_gradient(x, kernel, bias):
    """float64 gradient of sum(conv2d(x, kernel, bias, relu=True, padding="reflect")) with respect to
    ``x`` (at the bfloat16-rounded operands), and the sum of the magnitudes of its terms.

    It is the transposed convolution of the ReLU mask with the kernel, whose values at the padding are
    then added to the pixels they reflect (up to two additions: in bfloat16 on the XLA path)."""
    y, bound = exact_and_bound(x, kernel, bias, False, "reflect")
    # Both paths take the mask from the sign of the float32 sum (bfloat16 rounding keeps signs).
    assert (np.abs(y) > bound).all(), "an output this close to 0 could take either side of the ReLU"
    mask, k = (y > 0).astype(np.float64), _bf16(kernel)
    kh, kw, c, _ = k.shape
    n, oh, ow, _ = mask.shape
    grad, magnitude = np.zeros((2, n, oh + kh - 1, ow + kw - 1, c))
    for i in range(kh):
        for j in range(kw):
            grad[:, i:i + oh, j:j + ow] += np.einsum("nhwo,co->nhwc", mask, k[i, j])
            magnitude[:, i:i + oh, j:j + ow] += np.einsum("nhwo,co->nhwc", mask, np.abs(k[i, j]))

    rows, cols = _fold(x.shape[1], "reflect"), _fold(x.shape[2], "reflect")
    return tuple(np.einsum("ap,bq,npqc->nabc", rows, cols, a) for a in (grad, magnitude))


def test_gradients_work_under_vmap():
    x, kernel, bias = _operands(5, 3, 8, 8, 4, 8)
    grad = jax.grad(lambda x: jnp.sum(conv.conv2d(x, kernel, bias, relu=True, padding="reflect")
                                      .astype(jnp.float32)))
    batched = jax.jit(jax.vmap(grad))(x.astype(jnp.float32)[:, None])
    # Each gradient element sums kh * kw * O = 72 products of the mask and the kernel in float32, then
    # the reflection padding adds up to two of those sums. oneDNN's backward kernels sum in float32 (and
    # the cotangent, 1, is exact in bfloat16: results agree to float32 rounding); JAX's derivative of XLA's
    # bfloat16 convolution rounds each sum to bfloat16 and adds them in bfloat16, three roundings of
    # 2^-8, so the vmapped (jitted) and per-example results can be a bfloat16 ulp apart.
    terms = 3 * 3 * kernel.shape[3] + 2
    bf16_roundings = 0 if onednn.available() else 3
    for i in range(3):
        single = grad(x.astype(jnp.float32)[i:i + 1])
        exact, magnitude = exact_relu_sum_input_gradient(x[i:i + 1], kernel, bias)
        bound = rounding_error(magnitude, terms, bf16_roundings)
        for name, got in (("vmapped", batched[i]), ("per example", single)):
            excess = np.abs(np.asarray(got, np.float64) - exact) - bound
            assert excess.max() <= 0, f"{name} gradient {i}: exceeds the rounding bound by {excess.max():.3g}"
        # Tight enough to catch a gradient of the wrong example (the masks differ in many places).
        assert bound.max() < 0.05 * np.abs(exact).max()


# --------------------------------------------------------------------------------------------------
# Gradients against float64, mode by mode
# --------------------------------------------------------------------------------------------------
#
# The oneDNN path's gradient (conv._backward) routes the cotangent, rounded once to bfloat16 (here by
# the transpose of the loss's cast to float32), through pooling, ReLU and the upsampling phases
# exactly, then sums products of bfloat16 values (exact in float32) in float32: oneDNN's backward
# kernels, then the padding's transpose adds up to three of those sums per pixel. So each gradient
# element is within rounding_error(sum of |terms|, terms, 1) of the float64 gradient of the same
# operands. The XLA fallback rounds more: its transposed convolutions return bfloat16 (1 rounding)
# and it adds the padding's border in bfloat16 (2 more, one per axis).

# Gradient -> (float32 terms beyond the convolution's own, bfloat16 roundings: oneDNN, XLA fallback).
GRADIENT_ROUNDINGS = {"input": (3, 1, 4), "kernel": (0, 1, 2), "bias": (0, 1, 1)}
# In float32 both paths round nothing to bfloat16: the cotangent, operands and results are float32, and
# the padding's transpose adds its (up to three) sums in float32 (the terms above).


def _fold(size, padding):
    """(size, size + 2): padded index -> the input index it copies (reflect / edge, 1 pixel)."""
    source = np.r_[1, 0:size, size - 2] if padding == "reflect" else np.r_[0, 0:size, size - 1]
    return np.eye(size)[source].T


def _interleave(z):
    """Independent numpy form of ops.interleave_phases: y[2i + p, 2j + q] = phase 2p + q of z[i + p, j + q]."""
    n, h, w, o = z.shape[0], z.shape[1] - 1, z.shape[2] - 1, z.shape[3] // 4
    y = np.zeros((n, 2 * h, 2 * w, o))
    for p in range(2):
        for q in range(2):
            y[:, p::2, q::2] = z[:, p:p + h, q:q + w, (2 * p + q) * o:(2 * p + q + 1) * o]
    return y


def _deinterleave(y):
    """The transpose of `_interleave`: each z element receives the one y element it feeds, or 0."""
    n, h2, w2, o = y.shape
    h, w = h2 // 2, w2 // 2
    z = np.zeros((n, h + 1, w + 1, 4 * o))
    for p in range(2):
        for q in range(2):
            z[:, p:p + h, q:q + w, (2 * p + q) * o:(2 * p + q + 1) * o] = y[:, p::2, q::2]
    return z


def _pool_route(y, bound, cotangent, relu):
    """The pooled cotangent sent back to each window's maximum (float64 values), and which pooled
    outputs have one: a window whose two largest values are within their rounding bounds of each
    other may pick either on a computed path, and one whose maximum is within its bound of 0 may
    fall on either side of the ReLU."""
    n, h, w, c = y.shape
    ph, pw = (h + 1) // 2, (w + 1) // 2

    def windows(a, fill):
        a = np.pad(a, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=fill)
        return a.reshape(n, ph, 2, pw, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, ph, pw, c, 4)

    values, margin = windows(y, -np.inf), windows(bound, 0.0).max(axis=-1)
    ordered = np.sort(values, axis=-1)
    top, unique = ordered[..., -1], ordered[..., -1] - ordered[..., -2] > 2 * margin
    # With ReLU a window entirely below 0 has no gradient, whichever value it picks.
    keep = (unique & (top > margin)) | (top < -margin) if relu else unique
    routed = (np.arange(4) == values.argmax(axis=-1)[..., None]) * (cotangent * keep)[..., None]
    routed = routed.reshape(n, ph, pw, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * ph, 2 * pw, c)
    return routed[:, :h, :w], keep


def exact_gradients(x, kernel, bias, cotangent, relu, padding, pool=False, upsample=False, dtype=jnp.bfloat16):
    """float64 gradients of sum(conv2d(x, kernel, bias, ...) * cotangent) at the operands rounded to
    ``dtype``, written independently of the library: {name: (gradient, sum of |terms|, float32 terms)}
    for name in input, kernel, bias, a wrong gradient of each (flipped taps, reversed channels) that
    the bound must catch, the mask of outputs whose cotangent was kept (see `_pool_route`; the
    others' cotangent is set to 0 in ``cotangent``, which the caller must use), and "dz", the
    convolution's own cotangent (routed back through ReLU, pooling and upsampling)."""
    xb, kb = _rounded(x, dtype), _rounded(kernel, dtype)
    y, bound = exact_and_bound(xb, kb, np.asarray(bias, np.float64), False, padding, dtype=dtype)  # before ReLU
    if upsample:
        y, bound = _interleave(y), _interleave(bound)
    if pool:
        dy, keep = _pool_route(y, bound, cotangent, relu)
    else:
        keep = np.abs(y) > bound if relu else np.ones(y.shape, bool)
        dy = cotangent * keep
    if relu:
        dy = dy * (y > 0)
    dz = _deinterleave(dy) if upsample else dy
    xp = _pad(xb, padding)
    kh, kw, _, o = kb.shape
    n, oh, ow, _ = dz.shape

    def input_gradient(k, absolute=False):
        d = np.abs(dz) if absolute else dz
        k = np.abs(k) if absolute else k
        grad = np.zeros(xp.shape)
        for i in range(kh):
            for j in range(kw):
                grad[:, i:i + oh, j:j + ow] += np.einsum("nhwo,co->nhwc", d, k[i, j])
        if padding != "valid":
            grad = np.einsum("ap,bq,npqc->nabc", _fold(x.shape[1], padding), _fold(x.shape[2], padding), grad)
        return grad

    def kernel_gradient(absolute=False):
        a, d = (np.abs(xp), np.abs(dz)) if absolute else (xp, dz)
        return np.stack([np.stack([np.einsum("nhwc,nhwo->co", a[:, i:i + oh, j:j + ow], d) for j in range(kw)])
                         for i in range(kh)])

    dk, db = kernel_gradient(), dz.sum(axis=(0, 1, 2))
    return {"input": (input_gradient(kb), input_gradient(kb, True), kh * kw * o),
            "kernel": (dk, kernel_gradient(True), n * oh * ow),
            "bias": (db, np.abs(dz).sum(axis=(0, 1, 2)), n * oh * ow),
            "wrong": {"input": input_gradient(kb[::-1, ::-1]), "kernel": dk[::-1, ::-1], "bias": db[::-1]},
            "keep": keep, "dz": dz}


def _assert_gradient(got, exact, magnitude, terms, roundings, wrong, what):
    bound = rounding_error(magnitude, terms, roundings)
    got = np.asarray(got, np.float64)
    assert got.shape == exact.shape, what
    excess = np.abs(got - exact) - bound
    assert excess.max() <= 0, f"{what}: exceeds the rounding bound by {excess.max():.3g}"
    # The bound catches a real mistake: taps flipped (correlation for convolution), channels mixed up.
    assert (np.abs(wrong - exact) > bound).any(), f"{what}: the bound would not catch a wrong gradient"


def _assert_gradients(grads, exact, what, extra_terms=0, dtype=jnp.bfloat16):
    for name, got in zip(("input", "kernel", "bias"), grads, strict=True):
        value, magnitude, terms = exact[name]
        more_terms, onednn_roundings, xla_roundings = GRADIENT_ROUNDINGS[name]
        roundings = 0 if dtype == F32 else onednn_roundings if onednn.available() else xla_roundings
        assert got.dtype == np.float32, name
        _assert_gradient(got, value, magnitude, terms + more_terms + extra_terms, roundings, exact["wrong"][name],
                         f"{what}: d{name}")


def _gradient_operands(seed, n, h, w, c, o, k, relu, padding, pool, upsample, dtype=jnp.bfloat16):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kernel = (rng.standard_normal((k, k, c, o)) / np.sqrt(k * k * c)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, o).astype(np.float32)
    out_shape = conv._check(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(bias), padding, pool, upsample)
    cotangent = rng.standard_normal(out_shape)
    if dtype == F32:  # what the float32 call takes, exactly (bfloat16 rounds it, which its bounds count)
        cotangent = cotangent.astype(np.float32).astype(np.float64)
    return x, kernel, bias, cotangent


def _loss(x, kernel, bias, cotangent, **options):
    return jnp.sum(conv.conv2d(x, kernel, bias, **options).astype(jnp.float32) * cotangent)


GRADIENT_CASES = [
    # (n, h, w, c, o, k, relu, padding, pool, upsample): 1 image (bands of rows), 2 and 4 (whole images
    # per thread), 3 (no even split: bands), odd sizes for ceil-mode pooling, channels that fill no vector.
    (1, 9, 11, 5, 7, 3, True, "valid", False, False),
    (2, 7, 6, 16, 3, 3, False, "valid", False, False),
    (3, 11, 7, 8, 12, 3, True, "reflect", False, False),
    (1, 5, 9, 3, 64, 3, False, "reflect", False, False),
    (2, 6, 5, 24, 20, 3, True, "edge", False, False),
    (1, 4, 3, 130, 9, 3, False, "edge", False, False),
    (1, 15, 9, 8, 16, 3, True, "reflect", True, False),
    (3, 6, 7, 5, 9, 3, False, "reflect", True, False),
    (4, 9, 5, 4, 8, 3, True, "valid", True, False),
    (2, 5, 7, 6, 20, 2, True, "edge", False, True),
    (1, 3, 4, 16, 8, 2, False, "edge", False, True),
]


@pytest.mark.parametrize("dtype", [jnp.bfloat16, F32], ids=["bf16", "f32"])
@pytest.mark.parametrize("n,h,w,c,o,k,relu,padding,pool,upsample", GRADIENT_CASES)
def test_gradients_of_every_mode_within_rounding_of_float64(n, h, w, c, o, k, relu, padding, pool, upsample, dtype):
    x, kernel, bias, cotangent = _gradient_operands(hash((n, h, w, c, o)) % 2 ** 32, n, h, w, c, o, k, relu,
                                                    padding, pool, upsample, dtype)
    exact = exact_gradients(x, kernel, bias, cotangent, relu, padding, pool, upsample, dtype)
    assert exact["keep"].mean() > 0.7, "too few outputs with an unambiguous gradient to test"
    cotangent = jnp.asarray(cotangent * exact["keep"], jnp.float32)
    options = {"relu": relu, "padding": padding, "pool": pool, "upsample": upsample, "dtype": dtype}
    grad = jax.jit(jax.grad(functools.partial(_loss, **options), argnums=(0, 1, 2)))
    # The gradient runs oneDNN's backward kernels exactly when the forward runs oneDNN.
    text = grad.lower(x, kernel, bias, cotangent).as_text()
    for target in (onednn.BACKWARD_DATA_TARGET, onednn.BACKWARD_WEIGHTS_TARGET):
        assert (f"@{target}" in text) == _on(dtype), target
    _assert_gradients(grad(x, kernel, bias, cotangent), exact, "jit", dtype=dtype)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, F32], ids=["bf16", "f32"])
def test_gradients_on_onednns_own_threads(monkeypatch, dtype):
    # ADAIN_JAX_ONEDNN_OMP=1 (read on every call) gives each whole convolution to oneDNN's OpenMP team
    # (no effect on the XLA fallback, which this then checks again).
    monkeypatch.setenv("ADAIN_JAX_ONEDNN_OMP", "1")
    for n, h, w, c, o, k, relu, padding, pool, upsample in (GRADIENT_CASES[2], GRADIENT_CASES[7], GRADIENT_CASES[9]):
        x, kernel, bias, cotangent = _gradient_operands(n + h, n, h, w, c, o, k, relu, padding, pool, upsample,
                                                        dtype)
        exact = exact_gradients(x, kernel, bias, cotangent, relu, padding, pool, upsample, dtype)
        options = {"relu": relu, "padding": padding, "pool": pool, "upsample": upsample, "dtype": dtype}
        grads = jax.grad(functools.partial(_loss, **options), argnums=(0, 1, 2))(
            x, kernel, bias, jnp.asarray(cotangent * exact["keep"], jnp.float32))
        _assert_gradients(grads, exact, f"OpenMP {padding} pool={pool} upsample={upsample}", dtype=dtype)


def test_backward_calls_take_bfloat16_and_return_float32_shapes():
    if not PATH_ON:  # the targets are registered only on the oneDNN path, and conv2d does not use them
        assert not onednn.available()
        return
    dy, kernel = jnp.ones((2, 5, 4, 6), jnp.bfloat16), jnp.ones((3, 2, 7, 6), jnp.float32)
    dx = conv.backward_data(dy, kernel)
    assert dx.shape == (2, 7, 5, 7) and dx.dtype == jnp.float32
    # All ones: each input pixel gets (its number of output windows) * O.
    rows, cols = np.minimum(np.minimum(np.arange(7) + 1, 7 - np.arange(7)), 3), np.minimum(
        np.minimum(np.arange(5) + 1, 5 - np.arange(5)), 2)
    assert np.array_equal(np.asarray(dx)[0, :, :, 0], 6.0 * np.outer(rows, cols))
    dk, db = conv.backward_weights(jnp.ones((2, 7, 5, 7)), dy)
    assert dk.shape == (3, 2, 7, 6) and db.shape == (6,) and dk.dtype == db.dtype == jnp.float32
    assert np.all(np.asarray(dk) == 2 * 5 * 4) and np.all(np.asarray(db) == 2 * 5 * 4)


@pytest.mark.parametrize("padding", ["reflect", "edge"])
@pytest.mark.parametrize("n", [1, 2, 3], ids=["n1", "n2", "n3"])  # bands of one image, whole images, bands of 3
def test_backward_weights_pads_in_the_call(n, padding):
    # The call pads each unit's rows itself; against the exact (float64) gradient of the padded
    # convolution, within float32 summation's bound, as is the call on an explicitly padded copy.
    if not onednn.available("float32"):  # which also registers the targets the calls below need
        assert not F32_ON
        return
    rng = np.random.default_rng(n)
    x, dy = rng.standard_normal((n, 9, 6, 5)), rng.standard_normal((n, 9, 6, 4))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=padding)
    windows = np.stack([np.stack([xp[:, i:i + 9, j:j + 6] for j in range(3)]) for i in range(3)])
    exact = np.einsum("ijnyxc,nyxo->ijco", windows, dy)
    bound = rounding_error(np.einsum("ijnyxc,nyxo->ijco", np.abs(windows), np.abs(dy)), n * 9 * 6)
    explicit = conv.backward_weights(jnp.asarray(xp, F32), jnp.asarray(dy, F32), F32)
    in_call = conv.backward_weights(jnp.asarray(x, F32), jnp.asarray(dy, F32), F32, padding)
    for name, (dk, db) in (("explicit", explicit), ("in the call", in_call)):
        assert dk.shape == (3, 3, 5, 4) and db.shape == (4,), name
        assert np.all(np.abs(np.asarray(dk, np.float64) - exact) <= bound), name
        np.testing.assert_allclose(np.asarray(db), dy.sum((0, 1, 2)), rtol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="padding must be one of"):
        conv.backward_weights(jnp.asarray(x, F32), jnp.asarray(dy, F32), F32, "zeros")


@pytest.mark.parametrize("padding", ["reflect", "edge"])
@pytest.mark.parametrize("n", [1, 2, 3], ids=["n1", "n2", "n3"])
def test_backward_data_adds_the_border_back_in_the_call(n, padding):
    # dx of a padded convolution: the padded input's gradient, each border pixel's added onto the
    # pixel it copies; against float64, within float32 summation's bound.
    if not onednn.available("float32"):  # which also registers the targets the calls below need
        assert not F32_ON
        return
    rng = np.random.default_rng(10 + n)
    h, w, c, o = 9, 6, 5, 4
    dy, kernel = rng.standard_normal((n, h, w, o)), rng.standard_normal((3, 3, c, o))

    def padded_gradient(dy, kernel):
        out = np.zeros((n, h + 2, w + 2, c))
        for i in range(3):
            for j in range(3):
                out[:, i:i + h, j:j + w] += np.einsum("nyxo,co->nyxc", dy, kernel[i, j])
        return out

    def source(size):  # padded index -> the index it copies
        inner = np.arange(size)
        return np.concatenate([[1 if padding == "reflect" else 0], inner,
                               [size - 2 if padding == "reflect" else size - 1]])

    def fold(padded):
        out = np.zeros((n, h, w, c))
        for p, row in enumerate(source(h)):
            for q, col in enumerate(source(w)):
                out[:, row, col] += padded[:, p, q]
        return out

    exact = fold(padded_gradient(dy, kernel))
    bound = rounding_error(fold(padded_gradient(np.abs(dy), np.abs(kernel))), 4 * 9 * o)
    dx = conv.backward_data(jnp.asarray(dy, F32), jnp.asarray(kernel, F32), F32, padding)
    assert dx.shape == (n, h, w, c) and dx.dtype == F32
    assert np.all(np.abs(np.asarray(dx, np.float64) - exact) <= bound)
    with pytest.raises(ValueError, match="padding must be one of"):
        conv.backward_data(jnp.asarray(dy, F32), jnp.asarray(kernel, F32), F32, "zeros")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, F32], ids=["bf16", "f32"])
@pytest.mark.parametrize("case", [GRADIENT_CASES[6], GRADIENT_CASES[9]], ids=["pool", "upsample"])
def test_gradients_under_vmap_of_images_kernels_and_both(case, dtype):
    n, h, w, c, o, k, relu, padding, pool, upsample = case
    options = {"relu": relu, "padding": padding, "pool": pool, "upsample": upsample, "dtype": dtype}
    cases = [_gradient_operands(s, n, h, w, c, o, k, relu, padding, pool, upsample, dtype) for s in (11, 12, 13)]
    xs, kernels, biases, cotangents = (np.stack(a) for a in zip(*cases, strict=True))
    grad = jax.grad(functools.partial(_loss, **options), argnums=(0, 1, 2))
    for in_axes, what in (((0, None, None, 0), "images, shared kernel"), ((0, 0, 0, 0), "images and kernels"),
                          ((None, 0, 0, 0), "kernels, shared image")):
        pick = lambda a, b, axis: a[0] if axis is None else a[b]  # noqa: E731
        exacts = [exact_gradients(pick(xs, b, in_axes[0]), pick(kernels, b, in_axes[1]),
                                  pick(biases, b, in_axes[2]), cotangents[b], relu, padding, pool, upsample, dtype)
                  for b in range(3)]
        kept = np.stack([cotangents[b] * exacts[b]["keep"] for b in range(3)]).astype(np.float32)
        operands = [a[0] if axis is None else a for a, axis in zip((xs, kernels, biases), in_axes[:3], strict=True)]
        batched = jax.jit(jax.vmap(grad, in_axes=in_axes))(*operands, kept)
        for b in range(3):
            _assert_gradients([g[b] for g in batched], exacts[b], f"vmap over {what}, element {b}", dtype=dtype)


SHARDED_GRADIENT_SCRIPT = """
import sys
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from adain_jax import onednn, parallel
from adain_jax.onednn import conv
assert jax.device_count() == 2, jax.devices()
data = np.load(sys.argv[1])
dtype = sys.argv[3]
def loss(x, k, b, cotangent):
    y = conv.conv2d(x, k, b, relu=True, padding="reflect", pool=True, dtype=dtype)
    return jnp.sum(y.astype(jnp.float32) * cotangent)
mesh = parallel.make_mesh()
rep, batch = parallel.replicated(mesh), parallel.batch_sharded(mesh)
grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), in_shardings=(batch, rep, rep, batch))
args = [jax.device_put(data[k], s) for k, s in (("x", batch), ("kernel", rep), ("bias", rep), ("cotangent", batch))]
dx, dk, db = grad(*args)
assert len(dx.sharding.device_set) == 2
# networks keeps its layers on XLA on a mesh, float32 and bfloat16: the call has no partitioning rule (XLA
# would gather the batch and run it whole on each device).
from adain_jax.model import architecture, networks
assert all(networks.float32_route(s) is None for s in architecture.ENCODER + architecture.DECODER)
spec = architecture.ENCODER[2]
params = {"kernel": jnp.zeros(spec.flax_kernel_shape), "bias": jnp.zeros(spec.out_channels)}
images = jax.device_put(jnp.zeros((4, 6, 6, spec.in_channels)), batch)
for d in ("bfloat16", "float32"):
    text = jax.jit(lambda p, x: networks.conv_layer(p, x, spec, jnp.dtype(d), pool_output=True)).lower(params, images).as_text()
    assert "@" + onednn.TARGET not in text and "convolution" in text, d
np.savez(sys.argv[2], dx=np.asarray(dx), dk=np.asarray(dk), db=np.asarray(db), onednn=onednn.available(dtype))
"""


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"], ids=["bf16", "f32"])
def test_gradients_under_a_batch_sharded_mesh(tmp_path, dtype):
    n, h, w, c, o, k = 4, 9, 7, 8, 12, 3
    x, kernel, bias, cotangent = _gradient_operands(21, n, h, w, c, o, k, True, "reflect", True, False, dtype)
    exact = exact_gradients(x, kernel, bias, cotangent, True, "reflect", True, dtype=dtype)
    np.savez(tmp_path / "in.npz", x=x, kernel=kernel, bias=bias,
             cotangent=(cotangent * exact["keep"]).astype(np.float32))
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_GRADIENT_SCRIPT, tmp_path / "in.npz", tmp_path / "out.npz",
                           dtype],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert bool(out["onednn"]) == _on(jnp.dtype(dtype))
    # The devices' partial kernel and bias gradients may be added across the mesh: one more term each.
    _assert_gradients((out["dx"], out["dk"], out["db"]), exact, "sharded over 2 devices", extra_terms=2,
                      dtype=jnp.dtype(dtype))


# --------------------------------------------------------------------------------------------------
# float32 layers: which run through oneDNN (networks.float32_route)
# --------------------------------------------------------------------------------------------------


def test_float32_layers_follow_their_route_and_env_turns_it_off():
    from adain_jax.model import architecture, networks

    family = "avx512" if F32_ON and onednn.isa().startswith("avx512") else "avx2"
    routes = networks.FLOAT32_ROUTES[family]
    assert set(routes.values()) <= {"onednn", "winograd", "forward"}
    names = {("encoder", s.name) for s in architecture.ENCODER} | {("decoder", s.name) for s in architecture.DECODER}
    assert set(routes) <= names, "a route names no layer"
    rng = np.random.default_rng(5)
    for network, specs in (("encoder", architecture.ENCODER), ("decoder", architecture.DECODER)):
        for spec in specs:
            if spec.kernel_size != 3:
                continue
            route = networks.float32_route(spec)
            assert route == (routes.get((network, spec.name)) if F32_ON else None), (network, spec.name)
            params = {"kernel": jnp.asarray(rng.standard_normal(spec.flax_kernel_shape) / 30, F32),
                      "bias": jnp.zeros(spec.out_channels, F32)}
            x = jnp.asarray(rng.uniform(0, 1, (1, 6, 6, spec.in_channels)), F32)

            def layer(params, x, spec=spec):
                return networks.conv_layer(params, x, spec, F32)

            # Not differentiated: oneDNN on every route ("winograd": its Winograd call, x being 6x6).
            # Differentiated: only on "onednn" and "winograd", with oneDNN's backward kernels (Winograd's
            # for the input gradient on "winograd"); "forward" then runs XLA's forward and gradient.
            forward_target = onednn.WINOGRAD_TARGET if route == "winograd" else onednn.TARGET
            data_target = onednn.WINOGRAD_BACKWARD_DATA_TARGET if route == "winograd" else onednn.BACKWARD_DATA_TARGET
            text = jax.jit(layer).lower(params, x).as_text()
            assert (f"@{forward_target}" in text) == (route is not None), (network, spec.name)
            text = jax.jit(jax.grad(lambda *a: jnp.sum(layer(*a) ** 2), argnums=(0, 1))).lower(params, x).as_text()
            differentiated = route in ("onednn", "winograd")
            assert (f"@{forward_target}" in text) == differentiated, (network, spec.name)
            assert (f"@{data_target}" in text) == differentiated, (network, spec.name)
            assert (f"@{onednn.BACKWARD_WEIGHTS_TARGET}" in text) == differentiated, (network, spec.name)


@pytest.mark.parametrize("route", ["onednn", "forward", "winograd"])
def test_a_routed_float32_layer_and_its_gradients_within_rounding_of_float64(route, monkeypatch):
    """conv_layer on each route (forced, so every CPU checks all), under jit, vmap and grad, against the
    float64 convolution of the same float32 operands: a reflection-padded encoder layer that pools
    (an even-sized input for Winograd's 2x2 tiles)."""
    from adain_jax.model import architecture, networks

    spec = architecture.ENCODER[2]  # conv1_2: 64 -> 64, pooled when its activation is not a feature
    monkeypatch.setattr(networks, "float32_route", lambda s: route)
    n, h, w = (2, 8, 10) if route == "winograd" else (2, 7, 9)
    x, kernel, bias, cotangent = _gradient_operands(31, n, h, w, spec.in_channels, spec.out_channels, 3, True,
                                                    "reflect", True, False, F32)
    exact, bound = exact_and_bound(x, kernel, bias, True, "reflect", pool=True, dtype=F32)
    if route == "winograd":
        bound = winograd_bound(x, kernel, bias, True, True)
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}

    def layer(params, x):
        return networks.conv_layer(params, x, spec, F32, pool_output=True)

    out = jax.jit(layer)(params, jnp.asarray(x))
    assert out.dtype == F32
    _assert_within(out, exact, bound, f"{route}: forward")
    batched = jax.jit(jax.vmap(layer, in_axes=(None, 0)))(params, jnp.asarray(x)[:, None])
    _assert_within(batched[:, 0], exact, bound, f"{route}: vmapped forward")
    grads = exact_gradients(x, kernel, bias, cotangent, True, "reflect", pool=True, dtype=F32)
    kept = jnp.asarray(cotangent * grads["keep"], F32)
    d_params, dx = jax.jit(jax.grad(lambda p, x: jnp.sum(layer(p, x) * kept), argnums=(0, 1)))(params, jnp.asarray(x))
    _assert_gradients((dx, d_params["kernel"], d_params["bias"]), grads, f"{route}: gradients", dtype=F32)


@pytest.mark.parametrize("relu, pool, upsample, shape", [
    (True, True, False, (2, 9, 7, 16)),  # odd sizes: ceil-mode windows of 1 and 2 pixels
    (True, False, False, (2, 8, 8, 16)),
    (True, False, True, (2, 10, 12, 8)),
    (False, True, False, (2, 8, 6, 16)),
])
def test_the_cotangent_is_routed_in_float32_with_the_bits_of_bfloat16(relu, pool, upsample, shape):
    from adain_jax.model import ops

    rng = np.random.default_rng(4)
    # Few distinct values, half of them zero: ties in most pooling windows, and on both sides of the ReLU.
    activation = jnp.asarray(np.maximum(rng.integers(-3, 4, shape), 0) * 0.375, jnp.bfloat16)
    cotangent_shape = (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3]) if pool else shape
    g = jnp.asarray(rng.standard_normal(cotangent_shape), jnp.bfloat16)
    # The same chain in bfloat16, as JAX differentiates it.
    expected = jax.vjp(ops.max_pool_ceil, activation)[1](g)[0] if pool else g
    if relu:
        expected = jnp.where(activation > 0, expected, jnp.zeros_like(expected))
    if upsample:
        n, h2, w2, o = shape
        expected, = jax.linear_transpose(
            ops.interleave_phases, jax.ShapeDtypeStruct((n, h2 // 2 + 1, w2 // 2 + 1, 4 * o), jnp.bfloat16))(expected)
    routed = jax.jit(functools.partial(conv.route_cotangent, relu=relu, pool=pool, upsample=upsample,
                                       dtype=jnp.bfloat16))(g, activation)
    assert routed.dtype == jnp.bfloat16 and routed.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(routed, np.float32), np.asarray(expected, np.float32))
    if pool:  # ties were there to split (windows whose positive maximum occurs more than once)
        a = np.asarray(activation, np.float32)[:, :shape[1] // 2 * 2, :shape[2] // 2 * 2]
        windows = a.reshape(shape[0], shape[1] // 2, 2, shape[2] // 2, 2, shape[3]).transpose(0, 1, 3, 5, 2, 4)
        windows = windows.reshape(*windows.shape[:4], 4)
        top = windows.max(-1, keepdims=True)
        assert np.sum(((windows == top) & (top > 0)).sum(-1) > 1) > 10


# --------------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) forward (conv2d(..., winograd=True), float32)
# --------------------------------------------------------------------------------------------------

# The transforms, written here from Lavin & Gray's definitions (not the library's code).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_magnitude(xp, kernel):
    """The sum of the absolute values of every term Winograd's F(2x2, 3x3) adds up for each output of
    the 'valid' convolution of the padded float64 input ``xp`` (even size once the 2-pixel border is
    off) with a 3x3 kernel: the same transforms with |B|, |G|, |A|, |pixels| and |weights|."""
    n, hp, wp, c = xp.shape
    th, tw = (hp - 2) // 2, (wp - 2) // 2
    xp = np.abs(xp)
    tiles = np.stack([np.stack([xp[:, r:r + 2 * th:2, s:s + 2 * tw:2] for s in range(4)], 3) for r in range(4)], 3)
    v = np.einsum("ar,nhwrsc,bs->nhwabc", np.abs(B_T), tiles, np.abs(B_T))  # (n, th, tw, 4, 4, c)
    u = np.einsum("ai,ijco,bj->abco", np.abs(G), np.abs(kernel), np.abs(G))
    m = np.einsum("nhwabc,abco->nhwabo", v, u)
    y = np.einsum("pa,nhwabo,qb->nhwpqo", np.abs(A_T), m, np.abs(A_T))
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * th, 2 * tw, -1)


def winograd_bound(x, kernel, bias, relu, pool):
    """Per-output error bound of the Winograd forward, from rounding analysis alone: every term
    (coefficient x pixel x weight) of an output passes through at most C + 11 float32 roundings (2 in
    the input transform, 4 in the kernel's, C in the product and its sum over channels, 5 in the output
    transform with the bias; the 1/2 scalings are exact), so the result is within gamma_(C+11) of the sum
    of the terms' absolute values (`winograd_magnitude`, plus |bias|); ReLU and pooling add nothing."""
    magnitude = winograd_magnitude(_pad(_rounded(x, F32), "reflect"), _rounded(kernel, F32))
    bound = float32_sum_error(x.shape[-1] + 11) * (magnitude + np.abs(np.asarray(bias, np.float64)))
    return _pool(bound) if pool else bound


# (n, h, w, c, o, relu, pool): one 2x2 image, bands within an image and across images, channels
# that fill no vector, both outputs of the handler (full tiles and pooled tiles), and many small images,
# which share a matmul (whole images a unit, and a last unit with fewer; on up to 4 / 10 threads).
WINOGRAD_CASES = [
    (1, 2, 2, 3, 4, True, False),
    (1, 8, 10, 5, 7, True, False),
    (2, 6, 4, 16, 33, False, True),
    (3, 12, 14, 64, 40, True, True),
    (2, 32, 32, 24, 8, False, False),
    (40, 2, 4, 6, 5, True, False),
    (9, 4, 6, 8, 5, False, True),
]


def test_winograd_kernel_is_g_g_gt():
    _, kernel, _ = _operands(7, 1, 2, 2, 6, 5, dtype=F32)
    exact = np.einsum("ai,ijco,bj->abco", G, _rounded(kernel, F32), G)
    got = np.asarray(conv.winograd_kernel(kernel), np.float64)
    # entries are sums of at most 9 weights scaled by powers of 2, computed with 4 roundings
    bound = float32_sum_error(4) * np.einsum("ai,ijco,bj->abco", np.abs(G), np.abs(_rounded(kernel, F32)), np.abs(G))
    assert got.shape == (4, 4, 6, 5)
    assert (np.abs(got - exact) <= bound).all()


@pytest.mark.parametrize("n,h,w,c,o,relu,pool", WINOGRAD_CASES)
def test_winograd_within_rounding_of_float64(n, h, w, c, o, relu, pool):
    x, kernel, bias = _operands(hash((n, h, w, c, o, 1)) % 2 ** 32, n, h, w, c, o, dtype=F32)
    exact, _ = exact_and_bound(x, kernel, bias, relu, "reflect", pool, F32)
    bound = winograd_bound(x, kernel, bias, relu, pool)
    call = jax.jit(functools.partial(conv.conv2d, relu=relu, padding="reflect", pool=pool, dtype=F32, winograd=True))
    assert (f"@{onednn.WINOGRAD_TARGET}" in call.lower(x, kernel, bias).as_text()) == F32_ON
    out = call(x, kernel, bias)
    assert out.dtype == F32
    _assert_within(out, exact, bound, "winograd")


def test_winograd_leaves_other_calls_to_the_direct_convolution():
    """Odd sizes, other paddings, upsampling and bfloat16 take the direct call, bit for bit."""
    for shape, padding, dtype in (((1, 7, 8, 4), "reflect", F32), ((1, 8, 9, 4), "reflect", F32),
                                  ((1, 8, 8, 4), "edge", F32), ((1, 8, 8, 4), "valid", F32),
                                  ((1, 8, 8, 4), "reflect", jnp.bfloat16)):
        x, kernel, bias = _operands(3, *shape, 6, dtype=dtype)
        options = {"relu": True, "padding": padding, "dtype": dtype}
        wino = jax.jit(functools.partial(conv.conv2d, winograd=True, **options))
        assert f"@{onednn.WINOGRAD_TARGET}" not in wino.lower(x, kernel, bias).as_text(), (shape, padding, dtype)
        direct = jax.jit(functools.partial(conv.conv2d, **options))
        np.testing.assert_array_equal(wino(x, kernel, bias), direct(x, kernel, bias))
    assert not conv.winograd_applies((1, 8, 8, 4), (2, 2, 4, 8), "edge", True)
    assert conv.winograd_applies((3, 1, 8, 6, 4), (3, 3, 4, 8), "reflect", False)


def test_winograd_under_vmap_of_images_and_kernels():
    x, kernel, bias = _operands(4, 2, 6, 8, 12, 9, dtype=F32)
    xs = jnp.stack([x, -x, 0.5 * x])
    kernels = jnp.stack([kernel, -kernel, 2 * kernel])
    biases = jnp.stack([bias, bias + 1, -bias])
    conv_w = functools.partial(conv.conv2d, relu=True, padding="reflect", dtype=F32, winograd=True)
    images = jax.jit(jax.vmap(lambda x: conv_w(x, kernel, bias)))(xs)  # the batch folded into N
    both = jax.jit(jax.vmap(conv_w))(xs, kernels, biases)  # one kernel per batch element
    for b in range(3):
        exact, _ = exact_and_bound(xs[b], kernel, bias, True, "reflect", dtype=F32)
        _assert_within(images[b], exact, winograd_bound(xs[b], kernel, bias, True, False), f"vmap image {b}")
        exact, _ = exact_and_bound(xs[b], kernels[b], biases[b], True, "reflect", dtype=F32)
        _assert_within(both[b], exact, winograd_bound(xs[b], kernels[b], biases[b], True, False), f"vmap both {b}")


@pytest.mark.parametrize("n,h,w,pool", [(2, 8, 6, False), (2, 8, 6, True), (9, 2, 6, False)],
                         ids=["plain", "pool", "small-images"])
def test_winograd_gradients_within_rounding_of_float64(n, h, w, pool):
    """The gradients of a Winograd call: the input's by Winograd (its bound below), the kernel's and
    bias's by oneDNN's direct kernels (the usual bounds), at the Winograd forward's ReLU mask and pooling
    choices."""
    c, o = 8, 12
    x, kernel, bias, cotangent = _gradient_operands(17 + n + pool, n, h, w, c, o, 3, True, "reflect", pool, False, F32)
    exact = exact_gradients(x, kernel, bias, cotangent, True, "reflect", pool, False, F32)
    assert exact["keep"].mean() > 0.7
    cotangent = jnp.asarray(cotangent * exact["keep"], F32)
    options = {"relu": True, "padding": "reflect", "pool": pool, "dtype": F32, "winograd": True}
    grad = jax.jit(jax.grad(functools.partial(_loss, **options), argnums=(0, 1, 2)))
    text = grad.lower(x, kernel, bias, cotangent).as_text()
    for target in (onednn.WINOGRAD_TARGET, onednn.WINOGRAD_BACKWARD_DATA_TARGET, onednn.BACKWARD_WEIGHTS_TARGET):
        assert (f"@{target}" in text) == F32_ON, target
    assert f"@{onednn.BACKWARD_DATA_TARGET}(" not in text
    dx, dkernel, dbias = grad(x, kernel, bias, cotangent)
    for name, got in (("kernel", dkernel), ("bias", dbias)):
        value, magnitude, terms = exact[name]
        _assert_gradient(got, value, magnitude, terms + GRADIENT_ROUNDINGS[name][0], 0, exact["wrong"][name],
                         f"winograd: d{name}")
    if F32_ON:
        # dx by Winograd: the padded input's gradient is F(2x2, 3x3) of the convolution's cotangent
        # zero-padded by 2 with the flipped, transposed kernel (O + 11 roundings, as in winograd_bound,
        # with no bias), then folded: at most 4 of its values summed onto a pixel, 3 roundings more.
        flipped = np.flip(np.asarray(kernel, np.float64), (0, 1)).transpose(0, 1, 3, 2)
        padded = winograd_magnitude(np.pad(exact["dz"], ((0, 0), (2, 2), (2, 2), (0, 0))), flipped)
        magnitude = np.einsum("ip,npqc,jq->nijc", _fold(h, "reflect"), padded, _fold(w, "reflect"))
        _assert_within(dx, exact["input"][0], float32_sum_error(o + 14) * magnitude, "winograd dx")
    else:  # XLA's gradient
        value, magnitude, terms = exact["input"]
        _assert_gradient(dx, value, magnitude, terms + GRADIENT_ROUNDINGS["input"][0], 0, exact["wrong"]["input"],
                         "dinput")


@pytest.mark.skipif(not F32_ON, reason="the handlers are registered where the float32 path runs")
def test_winograd_handlers_refuse_shapes_they_cannot_tile():
    """Called directly (conv2d and backward_data never do this), the handlers name the problem."""
    assert onednn.available("float32")  # registers the targets
    x = jnp.zeros((1, 5, 6, 4), F32)  # an odd height: no 2x2 tiles
    u, bias = jnp.zeros((4, 4, 4, 3), F32), jnp.zeros(3, F32)
    forward = jax.ffi.ffi_call(onednn.WINOGRAD_TARGET, jax.ShapeDtypeStruct((1, 5, 6, 3), F32))
    with pytest.raises(Exception, match="even-sized input"):
        jax.block_until_ready(forward(x, u, bias, relu=True, pool=False))
    backward = jax.ffi.ffi_call(onednn.WINOGRAD_BACKWARD_DATA_TARGET, jax.ShapeDtypeStruct((1, 5, 6, 3), F32))
    with pytest.raises(Exception, match="even-sized dy"):
        jax.block_until_ready(backward(jnp.zeros((1, 5, 6, 4), F32), jnp.zeros((4, 4, 4, 3), F32)))
