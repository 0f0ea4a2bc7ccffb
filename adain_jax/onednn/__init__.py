"""Whether the oneDNN bfloat16 convolution can run here, and registering it (forward and backward
handlers) with XLA.

The compiled part is ``_onednn_conv.so`` in this directory, built by ``python -m
adain_jax.onednn.build`` from the PyPI packages ``onednn-cpu-gomp`` / ``onednn-devel-cpu-gomp``
(libdnnl.so and its headers) and jaxlib's XLA FFI headers. `available` says whether
`adain_jax.onednn.conv.conv2d` uses it: the library was built and loads, and the CPU has
AVX512-BF16 or AMX-BF16 (without them oneDNN's bfloat16 kernels are no faster than XLA's). When it
cannot be used, `available` emits one notice (a `RuntimeWarning`) per process saying why, and
`conv2d` computes the same convolution with XLA. ``ADAIN_JAX_ONEDNN=0`` forces that fallback.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pathlib
import warnings

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
LIBRARY = PACKAGE_DIR / "_onednn_conv.so"
TARGET = "adain_onednn_conv"
# The backward pass's two convolutions (`adain_jax.onednn.conv`): gradient wrt the input, and wrt
# the kernel and bias.
BACKWARD_DATA_TARGET = "adain_onednn_conv_backward_data"
BACKWARD_WEIGHTS_TARGET = "adain_onednn_conv_backward_weights"
# XLA FFI target -> the handler's symbol in the library.
HANDLERS = {TARGET: "AdainOnednnConv", BACKWARD_DATA_TARGET: "AdainOnednnConvBackwardData",
            BACKWARD_WEIGHTS_TARGET: "AdainOnednnConvBackwardWeights"}
ENV = "ADAIN_JAX_ONEDNN"
CPU_FLAGS = ("avx512_bf16", "amx_bf16")
DNNL_DISTRIBUTION = "onednn-cpu-gomp"


class Unavailable(RuntimeError):
    """Why the oneDNN path cannot run in this process."""


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


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


def _load() -> ctypes.CDLL:
    if os.environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
        raise Unavailable(f"disabled by {ENV}=0")
    flags = cpu_flags()
    if not flags.intersection(CPU_FLAGS):
        raise Unavailable("this CPU has neither AVX512-BF16 nor AMX-BF16")
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
    if not all(hasattr(lib, symbol) for symbol in HANDLERS.values()):
        raise Unavailable(f"{LIBRARY.name} is out of date (run: python -m adain_jax.onednn.build)")
    if not lib.adain_onednn_cpu_isa_bf16():
        raise Unavailable("oneDNN finds no bfloat16 instructions on this CPU")
    return lib


@functools.cache
def _status() -> tuple[bool, str]:
    try:
        lib = _load()
    except Unavailable as e:
        return False, str(e)
    import jax

    for target, symbol in HANDLERS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return True, "oneDNN bfloat16 convolutions"


@functools.cache
def _notify(reason: str) -> None:
    warnings.warn(f"adain_jax.onednn: {reason}; bfloat16 convolutions run through XLA instead.",
                  RuntimeWarning, stacklevel=4)


def available() -> bool:
    """True if `conv2d` runs oneDNN's kernels (the targets are then registered with XLA for the CPU)."""
    ok, reason = _status()
    if not ok:
        _notify(reason)
    return ok


def reason() -> str:
    """One line: what `conv2d` runs, or why not oneDNN."""
    return _status()[1]
