"""adain_jax.cpuinfo: the flags, vendor and name read from a /proc/cpuinfo."""

import platform

import pytest

from adain_jax import cpuinfo


def write(tmp_path, vendor, family, model, flags, name="AMD EPYC"):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
                    f"model name\t: {name}\nstepping\t: 1\ncpu MHz\t\t: 2600.000\nflags\t\t: {flags}\n\n"
                    "processor\t: 1\nvendor_id\t: SecondProcessor\nmodel name\t: Second\n")
    return str(path)


def test_flags_vendor_and_fields_are_the_first_processors(tmp_path):
    path = write(tmp_path, "AuthenticAMD", 26, 2, "fpu avx2 avx512f avx512_bf16")
    assert cpuinfo.flags(path) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpuinfo.vendor(path) == "AuthenticAMD"
    assert cpuinfo.field("cpu MHz", path) == "2600.000"
    # "model" is its own field, not a prefix of "model name"
    assert cpuinfo.field("model", path) == "2" and cpuinfo.field("model name", path) == "AMD EPYC"


@pytest.mark.parametrize("vendor, family, model, flags, expected", [
    ("AuthenticAMD", 26, 2, "avx2 avx512f avx512_bf16", "AMD EPYC (Zen 5; family 26, model 2)"),
    ("AuthenticAMD", 25, 17, "avx2 avx512f avx512_bf16", "AMD EPYC (Zen 4; family 25, model 17)"),
    ("AuthenticAMD", 25, 1, "avx2 fma", "AMD EPYC (Zen 3; family 25, model 1)"),  # Zen 3 has no AVX-512
    ("AuthenticAMD", 23, 49, "avx2 fma", "AMD EPYC (Zen/Zen+/Zen 2; family 23, model 49)"),
    ("AuthenticAMD", 21, 2, "avx fma", "AMD EPYC (family 21, model 2)"),  # older: no generation guessed
    ("GenuineIntel", 6, 143, "avx512f amx_bf16", "Intel(R) Xeon(R) Processor (family 6, model 143)"),
])
def test_the_name_tells_the_generation_where_the_model_name_does_not(tmp_path, vendor, family, model, flags,
                                                                      expected):
    model_name = "Intel(R) Xeon(R) Processor" if vendor == "GenuineIntel" else "AMD EPYC"
    assert cpuinfo.name(write(tmp_path, vendor, family, model, flags, model_name)) == expected


def test_without_cpuinfo_the_fields_are_empty_and_the_name_is_platforms(tmp_path):
    missing = str(tmp_path / "none")
    assert (cpuinfo.flags(missing), cpuinfo.vendor(missing), cpuinfo.field("model", missing)) == (set(), "", "")
    assert cpuinfo.name(missing) == (platform.processor() or platform.machine() or "unknown CPU")

