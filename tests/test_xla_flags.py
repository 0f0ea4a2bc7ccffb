"""adain_jax.xla_flags: appended, never replacing the user's XLA_FLAGS, and harmless when too late.

The behaviour that depends on when JAX's backend starts is checked in fresh interpreters, since
this test session's backend is already running.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

from adain_jax import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAG = xla_flags.FLAGS[0][0]
VALUE = xla_flags.FLAGS[0][1]


def run_python(code: str, **env) -> dict:
    """Run ``code`` in a fresh interpreter from the repository root; it prints one JSON line."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT_ENV)}
    full_env.update(env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_merged_appends_missing_flags_after_the_users_own():
    user = "--xla_cpu_enable_fast_math=false  --xla_force_host_platform_device_count=2"
    out = xla_flags.merged(user)
    assert out.startswith(user.strip())
    assert out.endswith(f"{FLAG}={VALUE}")
    assert xla_flags.merged(out) == out  # idempotent


def test_merged_keeps_the_users_value_of_the_same_flag():
    user = f"{FLAG}=dot"
    assert xla_flags.merged(user) == user
    assert xla_flags.merged("") == f"{FLAG}={VALUE}"


def test_flag_names_ignores_values_and_non_flags():
    assert xla_flags.flag_names("--a=1 --b junk --c=x=y") == {"--a", "--b", "--c"}


def test_opt_out_and_untested_jaxlib_leave_the_environment_alone(monkeypatch):
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false", xla_flags.OPT_OUT_ENV: "0"}
    assert xla_flags.apply(env) == "disabled"
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"

    monkeypatch.setattr(xla_flags, "_jaxlib_series", lambda: (99, 0))
    env = {}
    assert xla_flags.apply(env) == "untested-jaxlib"
    assert env == {}


# The probe of the flag's effect: jaxlib 0.10 sends a convolution to YNNPACK ("__ynn_fusion")
# unless the flag is set; with it, the convolution is XLA's own. (YNNPACK leaves very small
# convolutions alone, so the probe's must be big enough: 8x8x4 is not, 32x32x32 is.)
_CONV_PROBE = """
    import jax, jax.numpy as jnp
    conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                    precision=jax.lax.Precision.HIGHEST)
    hlo = jax.jit(conv).lower(jnp.zeros((1, 34, 34, 32)), jnp.zeros((3, 3, 32, 32))).compile().as_text()
    ynn_conv = "__ynn_fusion" in hlo
"""


def test_importing_adain_jax_first_applies_the_flag_and_keeps_the_users_flags():
    code = "\n".join(textwrap.dedent(part) for part in ("""
        import json, os
        import adain_jax
        from adain_jax import xla_flags
    """, _CONV_PROBE, """
        print(json.dumps({"status": xla_flags.status, "flags": os.environ["XLA_FLAGS"], "ynn_conv": ynn_conv}))
    """))
    out = run_python(code, XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    assert out["status"] == "applied"
    assert out["flags"] == f"--xla_cpu_enable_fast_math=false {FLAG}={VALUE}"
    assert out["ynn_conv"] is False  # the flag exists in this jaxlib and took effect


def test_a_user_setting_of_the_same_flag_wins():
    out = run_python("""
        import json, os
        import adain_jax
        from adain_jax import xla_flags
        print(json.dumps({"status": xla_flags.status, "flags": os.environ["XLA_FLAGS"]}))
    """, XLA_FLAGS=f"{FLAG}=individual_convolution")
    assert out == {"status": "present", "flags": f"{FLAG}=individual_convolution"}


def test_too_late_warns_once_changes_nothing_and_still_works():
    out = run_python("""
        import json, os, warnings
        import numpy as np
        import jax, jax.numpy as jnp
        jnp.ones(3).block_until_ready()  # the backend is running now
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import adain_jax
            from adain_jax import xla_flags
            again = xla_flags.apply()
        w = adain_jax.init_weights(jax.random.key(0))
        out = adain_jax.stylize(w, jnp.full((1, 16, 16, 3), 0.5), jnp.full((1, 16, 16, 3), 0.25))
        print(json.dumps({"status": xla_flags.status, "again": again, "flags": os.environ.get("XLA_FLAGS"),
                          "warnings": [str(c.message) for c in caught if c.category is RuntimeWarning],
                          "finite": bool(np.isfinite(np.asarray(out)).all())}))
    """)
    assert out["status"] == out["again"] == "too-late"
    assert out["flags"] is None
    assert len(out["warnings"]) == 1 and FLAG in out["warnings"][0]
    assert out["finite"]


def test_opt_out_in_a_fresh_process_leaves_xla_flags_unset():
    code = "\n".join(textwrap.dedent(part) for part in ("""
        import json, os
        import adain_jax
        from adain_jax import xla_flags
    """, _CONV_PROBE, """
        print(json.dumps({"status": xla_flags.status, "flags": os.environ.get("XLA_FLAGS"), "ynn_conv": ynn_conv}))
    """))
    out = run_python(code, **{xla_flags.OPT_OUT_ENV: "0"})
    assert out["status"] == "disabled" and out["flags"] is None
    # The control for the probe above: without the flag, jaxlib 0.10 hands convolutions to YNNPACK
    # (the installed jaxlib is a tested series: test_the_installed_and_the_pinned_jaxlib_are_tested_series).
    assert out["ynn_conv"] is True


def _series(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_the_installed_and_the_pinned_jaxlib_are_tested_series():
    # Guards the version gate from both sides. The version the gate reads must be the installed
    # distribution's (read here from its metadata, not through the gate's own code), and every
    # jax series the package pins must be one the flags were measured on: bumping the pin past
    # TESTED_JAXLIB_SERIES fails here, telling whoever bumps it to re-measure the flags (see
    # docs/performance.md) and extend the tuple, instead of the flags silently switching off.
    import re
    import tomllib
    from importlib import metadata

    installed = _series(metadata.version("jaxlib"))
    assert xla_flags._jaxlib_series() == installed
    assert installed in xla_flags.TESTED_JAXLIB_SERIES, (
        f"jaxlib {metadata.version('jaxlib')} is not a tested series {xla_flags.TESTED_JAXLIB_SERIES}")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"jax\b(?!lib)", d)]
    exact = re.search(r"==\s*([0-9.]+)", pin)
    low = re.search(r">=\s*([0-9.]+)", pin)
    high = re.search(r"<\s*([0-9.]+)", pin)
    assert exact or (low and high), f"pyproject.toml pins jax without a version or a series range: {pin!r}"
    if exact:
        pinned = {_series(exact.group(1))}
    else:
        first, last = _series(low.group(1)), _series(high.group(1) + ".0")
        pinned = {(first[0], minor) for minor in range(first[1], last[1])} if first[0] == last[0] else {first}
    assert pinned <= set(xla_flags.TESTED_JAXLIB_SERIES), (pin, xla_flags.TESTED_JAXLIB_SERIES)
