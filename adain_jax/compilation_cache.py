"""JAX's persistent compilation cache for adain_jax's command-line start-up.

Every new image size is a new XLA program: compiling `stylize` takes seconds on CPU, longer than
running it at 512x512 (docs/performance.md). With the persistent cache, a later process that meets a
size it has seen before loads the compiled program from disk instead.

`enable` is for applications (the CLI calls it); the library never turns it on by itself, since
the cache is process-wide JAX configuration. A cache directory the user already configured
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir", ...)``) is used as
is; otherwise ``$ADAIN_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/adain-jax/xla`` (``~/.cache/...``).
``ADAIN_JAX_CACHE_DIR=`` (empty) or ``off`` disables it.
"""

from __future__ import annotations

import os
import pathlib

ENV = "ADAIN_JAX_CACHE_DIR"

# Cache every program, however fast it compiled. With JAX's default of 1 s, the style encoder at
# 512 px (0.8-1.1 s to compile on 2 cores) was cached only when the machine happened to be busy,
# so a fresh process usually compiled it again: about 0.9 s of every command's start-up.
MIN_COMPILE_TIME_SECS = 0.0


def default_dir(environ=None) -> pathlib.Path | None:
    """Where `enable` puts the cache when the user configured none; None when disabled."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in ("", "0", "off", "none", "false") else pathlib.Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "adain-jax" / "xla"


def enable(directory=None) -> pathlib.Path | None:
    """Turn on the persistent cache (before the first compilation); returns the directory in use.

    ``directory`` overrides the defaults above but not a cache directory the user already set.
    Returns None when disabled or when the directory cannot be created (the cache is an
    optimisation: failing to set it up must never stop a run).
    """
    import jax

    configured = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]  # jax's Config declares no options
    if configured:
        return pathlib.Path(configured)
    path = pathlib.Path(directory).expanduser() if directory is not None else default_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    return path
