"""Whether the oneDNN convolutions can run here, per operand type, and registering them (forward and
backward handlers) with XLA.

The compiled part is ``_onednn_conv.so`` in this directory, built by ``python -m
adain_jax.onednn.build`` from the PyPI packages ``onednn-cpu-gomp`` / ``onednn-devel-cpu-gomp``
(libdnnl.so and its headers) and jaxlib's XLA FFI headers. One library serves both types.
`available` says whether `adain_jax.onednn.conv.conv2d` uses it for a type: the library was built
and loads, and for ``"bfloat16"`` the CPU has AVX512-BF16 or AMX-BF16 (without them oneDNN's
bfloat16 kernels are no faster than XLA's), for ``"float32"`` oneDNN finds AVX2 or better.
When bfloat16 cannot use it, `available` emits one notice (a `RuntimeWarning`) per process saying
why, and `conv2d` computes the same convolution with XLA. float32 says nothing: XLA's float32
convolution is the default path, which a machine without the library simply keeps (`reason` says
why). ``ADAIN_JAX_ONEDNN=0`` forces the fallback for both.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pathlib
import warnings

from adain_jax import cpuinfo

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
LIBRARY = PACKAGE_DIR / "_onednn_conv.so"
TARGET = "adain_onednn_conv"
# The backward pass's two convolutions (`adain_jax.onednn.conv`): gradient wrt the input, and wrt
# the kernel and bias.
BACKWARD_DATA_TARGET = "adain_onednn_conv_backward_data"
BACKWARD_WEIGHTS_TARGET = "adain_onednn_conv_backward_weights"
# XLA FFI target -> the handler's symbol in the library.
# The float32 forward and input gradient by Winograd's F(2x2, 3x3) (`adain_jax.onednn.conv.winograd_conv2d`).
WINOGRAD_TARGET = "adain_onednn_winograd"
WINOGRAD_BACKWARD_DATA_TARGET = "adain_onednn_winograd_backward_data"
HANDLERS = {TARGET: "AdainOnednnConv", BACKWARD_DATA_TARGET: "AdainOnednnConvBackwardData",
            BACKWARD_WEIGHTS_TARGET: "AdainOnednnConvBackwardWeights", WINOGRAD_TARGET: "AdainOnednnWinograd",
            WINOGRAD_BACKWARD_DATA_TARGET: "AdainOnednnWinogradBackwardData"}
# The handlers' interface (csrc's adain_onednn_abi): a library built from older source is refused, not
# called with attributes it does not take.
ABI = 3
ENV = "ADAIN_JAX_ONEDNN"
CPU_FLAGS = ("avx512_bf16", "amx_bf16")
DTYPES = ("bfloat16", "float32")
DNNL_DISTRIBUTION = "onednn-cpu-gomp"


class Unavailable(RuntimeError):
    """Why the oneDNN path cannot run in this process."""


def dnnl_library() -> pathlib.Path | None:
    """libdnnl.so.3 as installed by the ``onednn-cpu-gomp`` wheel (under the environment's lib/)."""
    from importlib import metadata

    try:
        files = metadata.files(DNNL_DISTRIBUTION) or ()
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "libdnnl.so.3":
            return pathlib.Path(file.locate()).resolve()
    return None


def disabled() -> bool:
    """Whether ``ADAIN_JAX_ONEDNN`` turns the oneDNN path off (0, false, no, off)."""
    return os.environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off")


def _load(dtype: str) -> ctypes.CDLL:
    if dtype not in DTYPES:
        raise ValueError(f"adain_jax.onednn: dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if disabled():
        raise Unavailable(f"disabled by {ENV}=0")
    if dtype == "bfloat16" and not cpuinfo.flags().intersection(CPU_FLAGS):
        raise Unavailable("this CPU has neither AVX512-BF16 nor AMX-BF16")
    lib = _library()
    if dtype == "bfloat16" and not lib.adain_onednn_cpu_isa_bf16():
        raise Unavailable("oneDNN finds no bfloat16 instructions on this CPU")
    if dtype == "float32" and not isa().startswith(("avx2", "avx512")):
        raise Unavailable(f"oneDNN's float32 kernels would use {isa()}, not AVX2 or AVX-512, here")
    return lib


@functools.cache
def isa() -> str:
    """oneDNN's name for the instructions its kernels use on this CPU (``ONEDNN_MAX_CPU_ISA`` can lower
    it), e.g. ``avx2``, ``avx512_core_bf16``, ``avx512_core_amx``; Unavailable without the library."""
    lib = _library()
    lib.adain_onednn_cpu_isa_name.restype = ctypes.c_char_p
    return lib.adain_onednn_cpu_isa_name().decode()


@functools.cache
def _library() -> ctypes.CDLL:
    if not LIBRARY.exists():
        raise Unavailable(f"{LIBRARY.name} is not built (run: python -m adain_jax.onednn.build)")
    dnnl = dnnl_library()
    try:
        # The .so's rpath names libdnnl's directory at build time; loading it first by its
        # installed path keeps working if the environment moved.
        if dnnl is not None:
            ctypes.CDLL(str(dnnl), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as e:
        raise Unavailable(f"{LIBRARY.name} does not load: {e}") from None
    symbols = (*HANDLERS.values(), "adain_onednn_cpu_isa_name", "adain_onednn_abi")
    if not all(hasattr(lib, symbol) for symbol in symbols) or lib.adain_onednn_abi() != ABI:
        raise Unavailable(f"{LIBRARY.name} is out of date (run: python -m adain_jax.onednn.build)")
    import jax

    for target, symbol in HANDLERS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return lib


@functools.cache
def _status(dtype: str) -> tuple[bool, str]:
    try:
        _load(dtype)
    except Unavailable as e:
        return False, str(e)
    return True, f"oneDNN {dtype} convolutions"


@functools.cache
def _notify(reason: str) -> None:
    warnings.warn(f"adain_jax.onednn: {reason}; bfloat16 convolutions run through XLA instead.",
                  RuntimeWarning, stacklevel=4)


def register() -> bool:
    """Register the handlers with XLA if the library loads here, for either type and without a notice;
    False if it does not (``ADAIN_JAX_ONEDNN=0``, not built). What running a stored program that calls
    them needs, whichever type it convolves."""
    if disabled():
        return False
    try:
        _library()
    except Unavailable:
        return False
    return True


def available(dtype: str = "bfloat16") -> bool:
    """True if `conv2d` runs oneDNN's kernels for ``dtype`` ("bfloat16" or "float32"; the targets are
    then registered with XLA for the CPU). A bfloat16 answer of False warns once per process."""
    ok, why = _status(dtype)
    if not ok and dtype == "bfloat16":
        _notify(why)
    return ok


def reason(dtype: str = "bfloat16") -> str:
    """One line: what `conv2d` runs for ``dtype``, or why not oneDNN."""
    return _status(dtype)[1]
