"""XLA:CPU settings for fast convolutions, appended to the user's ``XLA_FLAGS`` before JAX starts.

jaxlib 0.10 routes every convolution on CPU through YNNPACK by default (the ``individual_convolution``
entry of ``--xla_cpu_experimental_ynn_fusion_type``'s default list). For the AdaIN networks that path
is slow: about 18 GFLOP/s against about 45 for XLA's own (Eigen) convolution on the same 2 cores,
which made the whole model 2-3x slower than PyTorch (docs/performance.md). Removing that one entry
sends convolutions back to Eigen and leaves everything else, including YNNPACK for plain dots, as it
is; the results are the same to float rounding (parity is checked by tests/test_parity.py).

XLA reads ``XLA_FLAGS`` once, when the first backend starts, so `apply` must run before that:
``import adain_jax`` calls it first thing (`adain_jax/__init__.py`), and so does every entry point
that imports adain_jax before JAX computes. It never replaces what the user set:

* a flag whose name is already in ``XLA_FLAGS`` is left as the user wrote it;
* ``ADAIN_JAX_XLA_FLAGS=0`` turns the whole thing off;
* on a jaxlib other than the tested 0.10 series nothing is added (an unknown XLA flag aborts the
  process, and a newer YNNPACK may not need the workaround);
* if a JAX backend is already running (the user computed something before importing adain_jax),
  nothing can change any more: one warning says so and how to get the faster setting.
"""

from __future__ import annotations

import os
import warnings

ENV = "XLA_FLAGS"
OPT_OUT_ENV = "ADAIN_JAX_XLA_FLAGS"

# (name, value): checked against `strings` of jaxlib 0.10.2's libjax_common.so and its flag help
# (XLA aborts on an unknown flag and then prints the list). The leading '-' removes one entry from
# the default list instead of replacing the list.
FLAGS: tuple[tuple[str, str], ...] = (
    ("--xla_cpu_experimental_ynn_fusion_type", "-individual_convolution"),
)

# jaxlib (major, minor) series on which FLAGS were measured to help and to exist.
TESTED_JAXLIB_SERIES = ((0, 10),)

# What the last `apply` did: "applied", "present" (the user's XLA_FLAGS already name every flag),
# "disabled" (opt-out), "untested-jaxlib", "too-late" (a backend was running) or "not-run".
status = "not-run"
_warned = False


def flag_names(xla_flags: str) -> set[str]:
    """Names (``--xla_...``) of the flags in an ``XLA_FLAGS`` string."""
    return {token.split("=", 1)[0] for token in xla_flags.split() if token.startswith("--")}


def merged(xla_flags: str, flags=FLAGS) -> str:
    """``xla_flags`` with every flag of ``flags`` whose name it lacks appended; order kept."""
    present = flag_names(xla_flags)
    extra = [f"{name}={value}" for name, value in flags if name not in present]
    return " ".join([xla_flags.strip(), *extra]).strip() if extra else xla_flags


def _jaxlib_series() -> tuple[int, int] | None:
    try:
        from jaxlib import version

        major, minor = version.__version__.split(".")[:2]
        return int(major), int(minor)
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - a jaxlib without a parsable version
        return None


def _backends_initialized() -> bool:
    import sys

    if "jax" not in sys.modules:  # no backend without jax; and importing jax here would cost ~0.5 s
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - private API moved: assume the safe answer
        return False


def apply(environ=None) -> str:
    """Append FLAGS to ``XLA_FLAGS`` if that can still take effect; returns (and stores) the status."""
    global status, _warned
    environ = os.environ if environ is None else environ
    current = environ.get(ENV, "")
    if environ.get(OPT_OUT_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        status = "disabled"
    elif _jaxlib_series() not in TESTED_JAXLIB_SERIES:
        status = "untested-jaxlib"
    elif merged(current) == current:
        status = "present"
    elif _backends_initialized():
        status = "too-late"
        if not _warned:
            _warned = True
            warnings.warn(
                "adain_jax was imported after JAX started its backend, so it could not set "
                f"{' '.join(f'{n}={v}' for n, v in FLAGS)} in XLA_FLAGS; convolutions on CPU may run "
                "2-3x slower. Import adain_jax before running any JAX computation, or add the flag to "
                f"XLA_FLAGS yourself ({OPT_OUT_ENV}=0 silences this).",
                RuntimeWarning, stacklevel=3)
    else:
        environ[ENV] = merged(current)
        status = "applied"
    return status
