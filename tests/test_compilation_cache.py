"""adain_jax.compilation_cache: where the cache goes, and that a user's own setting wins.

`enable` changes process-wide JAX configuration, so its effects are checked in fresh interpreters.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

from adain_jax import compilation_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str, **env) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("JAX_COMPILATION_CACHE_DIR", compilation_cache.ENV, "XDG_CACHE_HOME")}
    full_env.update(env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_dir_follows_the_environment(tmp_path):
    assert compilation_cache.default_dir({compilation_cache.ENV: str(tmp_path)}) == tmp_path
    for off in ("", "off", "0"):
        assert compilation_cache.default_dir({compilation_cache.ENV: off}) is None
    assert compilation_cache.default_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "adain-jax" / "xla"


def test_enable_sets_the_cache_and_compiled_programs_land_there(tmp_path):
    cache = tmp_path / "xla"
    out = run_python("""
        import json
        import jax, jax.numpy as jnp
        from adain_jax import compilation_cache
        path = compilation_cache.enable()
        configured = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache even this tiny program
        jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(7)).block_until_ready()
        print(json.dumps({"path": str(path), "configured": configured}))
    """, **{compilation_cache.ENV: str(cache)})
    assert out["path"] == str(cache)
    assert out["configured"] == [str(cache), compilation_cache.MIN_COMPILE_TIME_SECS]
    assert any(cache.iterdir()), "nothing was written to the persistent cache"


def test_a_users_cache_dir_wins_and_disabling_works(tmp_path):
    mine = tmp_path / "mine"
    out = run_python("""
        import json, jax
        from adain_jax import compilation_cache
        print(json.dumps({"path": str(compilation_cache.enable("/nonexistent/ignored")),
                          "configured": jax.config.jax_compilation_cache_dir}))
    """, JAX_COMPILATION_CACHE_DIR=str(mine))
    assert out == {"path": str(mine), "configured": str(mine)}

    out = run_python("""
        import json, jax
        from adain_jax import compilation_cache
        print(json.dumps({"path": compilation_cache.enable(), "configured": jax.config.jax_compilation_cache_dir}))
    """, **{compilation_cache.ENV: "off"})
    assert out == {"path": None, "configured": None}
