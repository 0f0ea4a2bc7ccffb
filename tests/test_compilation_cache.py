"""adain_jax.compilation_cache: where the caches go, that a user's own setting wins, and that the
executable cache serves a later process the same numbers without compiling.

`enable` changes process-wide JAX configuration, so its effects are checked in fresh interpreters.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

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


# --------------------------------------------------------------------------------------------------
# The executable cache: what `adain_jax.typed_jit.jit` functions load instead of tracing again
# --------------------------------------------------------------------------------------------------

# A process that stylizes one random pair with the cache in $ADAIN_JAX_CACHE_DIR and reports how the
# calls were served (FORBID_COMPILE=1 makes a compilation by the executable cache an error).
STYLIZE_TWICE = """
    import json, os, sys
    import numpy as np
    import jax
    import adain_jax
    from adain_jax import compilation_cache, transfer

    compilation_cache.enable()
    if os.environ.get("FORBID_COMPILE"):
        def forbidden(*a, **k):
            raise AssertionError("compiled although the executable was stored")
        compilation_cache._compile_and_write = forbidden
    weights = adain_jax.init_weights(0)
    rng = np.random.default_rng(0)
    content, style = rng.random((1, 40, 48, 3), np.float32), rng.random((1, 32, 40, 3), np.float32)
    mean, std = transfer.style_moments(weights, style)
    out = transfer.stylize_with_moments(weights, content, mean, std, alpha=0.7)
    again = transfer.stylize_with_moments(weights, content, mean, std, alpha=0.7)
    np.save(os.environ["OUT"], np.asarray(out))
    print(json.dumps({"same_in_process": bool(np.array_equal(np.asarray(out), np.asarray(again))),
                      "dir": str(compilation_cache.executables_dir())}))
"""


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One process's cache of the two programs (a fresh interpreter's first run), its report and output:
    both tests below start from it, the damaged-entry one from a copy."""
    base = tmp_path_factory.mktemp("first_run")
    first = run_python(STYLIZE_TWICE, **{compilation_cache.ENV: str(base / "cache"), "OUT": str(base / "a.npy")})
    return base / "cache", first, base / "a.npy"


def test_a_second_process_runs_the_stored_executables_and_gets_the_same_numbers(first_run, tmp_path):
    cache, first, first_out = first_run
    stored = sorted(p.name for p in (cache / compilation_cache.EXECUTABLES).iterdir())
    assert first["dir"] == str(cache / compilation_cache.EXECUTABLES) and first["same_in_process"]
    assert len(stored) == 2 and all(name.endswith(".executable") for name in stored), stored
    # JAX's own cache did not keep these two programs: a copy JAX loads would serialise without its code.
    assert not [p.name for p in cache.iterdir() if "style_moments" in p.name or "stylize_with_moments" in p.name]

    run_python(STYLIZE_TWICE, **{compilation_cache.ENV: str(cache), "OUT": str(tmp_path / "b.npy"),
                                 "FORBID_COMPILE": "1"})
    run_python(STYLIZE_TWICE, **{compilation_cache.ENV: "off", "OUT": str(tmp_path / "plain.npy")})
    plain = np.load(tmp_path / "plain.npy")
    np.testing.assert_array_equal(np.load(first_out), plain)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), plain)


def test_a_damaged_entry_is_a_miss_and_is_written_again(first_run, tmp_path):
    cache, _, first_out = first_run
    cache = shutil.copytree(cache, tmp_path / "cache")
    entries = sorted((cache / compilation_cache.EXECUTABLES).iterdir())
    entries[0].write_bytes(b"not an executable")
    entries[1].write_bytes(entries[1].read_bytes()[:1000])
    run_python(STYLIZE_TWICE, **{compilation_cache.ENV: str(cache), "OUT": str(tmp_path / "b.npy")})
    np.testing.assert_array_equal(np.load(first_out), np.load(tmp_path / "b.npy"))
    assert all(entry.stat().st_size > 10_000 for entry in entries)


PRESERVE_COLOR = """
    import json
    import numpy as np
    import adain_jax
    from adain_jax import compilation_cache, transfer

    compilation_cache.enable()
    rng = np.random.default_rng(0)
    content, style = rng.random((1, 32, 40, 3), np.float32), rng.random((1, 32, 40, 3), np.float32)
    out = transfer.stylize(adain_jax.init_weights(0), content, style, preserve_color=True)
    print(json.dumps({"sum": float(np.asarray(out, np.float64).sum())}))
"""


def test_a_program_calling_kernels_that_only_lowering_registers_is_not_stored(tmp_path):
    # Colour preservation's eigendecomposition calls jaxlib's LAPACK kernels, which JAX registers
    # while lowering: a stored executable of it crashed the next process (segmentation fault).
    cache = tmp_path / "cache"
    first = run_python(PRESERVE_COLOR, **{compilation_cache.ENV: str(cache)})
    assert not list(cache.glob(f"{compilation_cache.EXECUTABLES}/*"))
    assert run_python(PRESERVE_COLOR, **{compilation_cache.ENV: str(cache)}) == first


@pytest.fixture
def executables(tmp_path):
    compilation_cache._executables_dir = tmp_path
    yield tmp_path
    compilation_cache.disable_executables()


def _key(fn, *args, **kwargs):
    from adain_jax import transfer

    fn = getattr(transfer, fn)
    keyed = compilation_cache._key(fn._fn, fn._static_argnames, args, kwargs)
    return None if keyed is None else keyed[0]


def test_the_key_follows_shapes_dtypes_static_arguments_and_sources(executables, random_weights, monkeypatch):
    import jax.numpy as jnp

    style = np.zeros((1, 16, 16, 3), np.float32)
    key = _key("style_moments", random_weights, style)
    assert key == _key("style_moments", random_weights, np.ones((1, 16, 16, 3), np.float32))  # values: same
    assert key == _key("style_moments", random_weights, style, precision="float32")  # the default, spelt out
    others = {_key("style_moments", random_weights, np.zeros((1, 16, 24, 3), np.float32)),
              _key("style_moments", random_weights, style.astype(np.float16)),
              _key("style_moments", random_weights, jnp.asarray(style)),
              _key("style_moments", random_weights, style, precision="bfloat16"),
              _key("stylize", random_weights, style, style)}
    assert key not in others and len(others) == 5
    monkeypatch.setattr(compilation_cache, "_environment", None)
    monkeypatch.setattr(compilation_cache, "_source_stamp", lambda: [("transfer.py", 1, 2)])
    assert _key("style_moments", random_weights, style) != key  # an edited source file is a new key


def test_calls_it_cannot_key_take_the_plain_path(executables, random_weights):
    import jax

    from adain_jax import transfer

    style = np.random.default_rng(0).random((1, 16, 16, 3), np.float32)
    with jax.default_device(jax.devices()[0]):  # a placement the user chose is the plain path's to honour
        assert _key("style_moments", random_weights, style) is None
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    on_mesh = jax.device_put(style, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    assert _key("style_moments", random_weights, on_mesh) is None
    # Inside another transformation the arguments are tracers: plain jit, nothing stored.
    grads = jax.grad(lambda s: transfer.style_moments(random_weights, s)[0].sum())(style)
    assert grads.shape == style.shape and not list(executables.iterdir())
    mean, _ = transfer.style_moments(random_weights, style)  # a plain call is stored
    assert len(list(executables.iterdir())) == 1
    np.testing.assert_array_equal(mean, transfer.style_moments._jitted(random_weights, style)[0])


def test_the_oldest_entries_go_beyond_the_limit(executables, monkeypatch):
    monkeypatch.setattr(compilation_cache, "MAX_EXECUTABLES", 3)
    for i in range(5):
        path = executables / f"{i}.executable"
        compilation_cache._write(path, b"x")
        os.utime(path, (1000 + i, 1000 + i))
    assert sorted(p.name for p in executables.iterdir()) == ["2.executable", "3.executable", "4.executable"]
