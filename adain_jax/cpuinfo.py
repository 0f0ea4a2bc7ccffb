"""What ``/proc/cpuinfo`` says about this CPU: its instruction-set flags and vendor, for choosing code
paths (`adain_jax.onednn`, training's dtype), and a name that tells the core generation, for naming the
CPU beside a measurement (benchmarks, the packaged model's record). A virtual machine's model name is
often just "AMD EPYC", which covers Zen 3 (no AVX-512, no bfloat16 unit) to Zen 5 (512-bit AVX-512 and
a bfloat16 rate twice the float32 one): the family and model numbers tell them apart. Where there is
no /proc/cpuinfo (not Linux) the fields are empty and the name is `platform`'s."""

from __future__ import annotations

import platform

PATH = "/proc/cpuinfo"


def field(name: str, path: str = PATH) -> str:
    """The first processor's ``name`` line, its value ("" where there is none)."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def flags(path: str = PATH) -> set[str]:
    return set(field("flags", path).split())


def vendor(path: str = PATH) -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... or "": the same bfloat16 instructions run at different
    rates on the two vendors' cores (`train.train.compute_dtype`)."""
    return field("vendor_id", path)


def amd_generation(family: int, cpu_flags: set[str]) -> str | None:
    """AMD's core generation from the CPU family (and AVX-512, which family 25 has from Zen 4 on)."""
    if family == 23:
        return "Zen/Zen+/Zen 2"
    if family == 25:
        return "Zen 4" if "avx512f" in cpu_flags else "Zen 3"
    if family == 26:
        return "Zen 5"
    return None


def name(path: str = PATH) -> str:
    """The model name with the family and model numbers, e.g. ``AMD EPYC (Zen 5; family 26, model 2)``
    or ``Intel(R) Xeon(R) Processor (family 6, model 143)``."""
    model_name = field("model name", path) or platform.processor() or platform.machine() or "unknown CPU"
    family, model = field("cpu family", path), field("model", path)
    if not (family.isdigit() and model.isdigit()):
        return model_name
    numbers = f"family {family}, model {model}"
    generation = amd_generation(int(family), flags(path)) if vendor(path) == "AuthenticAMD" else None
    return f"{model_name} ({generation}; {numbers})" if generation else f"{model_name} ({numbers})"
