"""The compute precision of stylization: float32 (the default, the parity target) or bfloat16.

In float32 the 3x3 convolutions run through XLA, or through oneDNN's float32 kernels on the CPU
layers where those measured faster (`adain_jax.model.networks.float32_route`); the arithmetic is
float32 either way.

In bfloat16 the convolutions take bfloat16 operands and accumulate in float32 (on CPUs with
AVX512-BF16 or AMX-BF16 through oneDNN, `adain_jax.onednn`; on GPU and TPU through XLA's own
bfloat16 convolutions); the statistics (moments, AdaIN, CORAL) and the output stay float32. A CPU
without bfloat16 units computes bfloat16 no faster than float32, so the command line runs float32
there and says so once (`effective`); the library computes what it is asked.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import jax.numpy as jnp

Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
ALIASES = {"f32": "float32", "fp32": "float32", "bf16": "bfloat16"}


def check(precision: str) -> Precision:
    """``precision`` as a `Precision`; ValueError unless it is one of `PRECISIONS`."""
    if precision == "float32":
        return "float32"
    if precision == "bfloat16":
        return "bfloat16"
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def dtype(precision: str) -> jnp.dtype:
    """The convolutions' operand type for ``precision``."""
    import jax.numpy as jnp  # here, not above: parsing a command line must not wait for JAX

    check(precision)
    return jnp.dtype(jnp.bfloat16 if precision == "bfloat16" else jnp.float32)


def parse(text: str) -> Precision:
    """A command-line value (``float32``, ``bfloat16``, or ``f32``/``bf16``) -> the precision's name."""
    return check(ALIASES.get(text.strip().lower(), text.strip().lower()))


def effective(precision: str) -> Precision:
    """What to run for a requested ``precision``: bfloat16 on a CPU backend without bfloat16 units
    runs float32, with one notice on stderr per process."""
    import jax

    from adain_jax import cpuinfo, onednn

    wanted = check(precision)
    if wanted == "bfloat16" and jax.default_backend() == "cpu" and not cpuinfo.flags() & set(onednn.CPU_FLAGS):
        _notice("this CPU has neither AVX512-BF16 nor AMX-BF16, where bfloat16 is no faster than float32: "
                "running float32")
        return "float32"
    return wanted


@functools.cache
def _notice(text: str) -> None:
    print(f"note: --precision bfloat16: {text}", file=sys.stderr)
