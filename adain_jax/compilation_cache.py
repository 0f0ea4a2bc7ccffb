"""Compiled programs on disk, for the start-up of adain_jax's commands.

Every new image size is a new XLA program: compiling `stylize` takes seconds on CPU, longer than
running it at 512x512 (docs/performance.md). Two caches keep a later process from paying that again:

* **JAX's persistent compilation cache** holds every compiled program. A hit still traces the
  Python function and lowers it to StableHLO to find its key: about 0.15 s for each of `stylize`'s
  two programs (style encoding and transfer) on 2 cores.
* **The executable cache** (`call`, used by the functions `adain_jax.typed_jit.jit` made: the
  jitted ``stylize``, ``style_moments``, ``stylize_with_moments``) keys a compiled executable by
  what determines it without tracing: the function, its static arguments, the shapes and dtypes
  of its inputs, the versions of jax/jaxlib, the backend and CPU, ``XLA_FLAGS`` and ``ADAIN_JAX_*``
  settings, and the size and time of every source file of the package. A hit loads the executable
  (about 0.02 s) and runs it. Anything it cannot key safely (traced values inside another
  transformation, arrays on a non-default device, arguments that are not arrays or numbers) takes
  the plain `jax.jit` path, and so does a program that calls a kernel JAX registers only while
  lowering (colour preservation's eigendecomposition).

`enable` is for applications (the CLI calls it); the library never turns either on by itself, since
the caches are process-wide configuration. A cache directory the user already configured
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir", ...)``) is used as
is; otherwise ``$ADAIN_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/adain-jax/xla`` (``~/.cache/...``).
``ADAIN_JAX_CACHE_DIR=`` (empty) or ``off`` disables both. Executables go to its ``executables/``
folder (at most `MAX_EXECUTABLES` files, the least recently used removed first). Like JAX's own
cache, an entry is a serialised executable that runs native code: the folder must be the user's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import pathlib
import pickle
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

ENV = "ADAIN_JAX_CACHE_DIR"
EXECUTABLES = "executables"
MAX_EXECUTABLES = 64
_SUFFIX = ".executable"
_JAX_CACHE_HIT = "/jax/compilation_cache/cache_hits"  # the event JAX records when its cache answers
_PACKAGE = pathlib.Path(__file__).resolve().parent

# Cache every program, however fast it compiled. With JAX's default of 1 s, the style encoder at
# 512 px (0.8-1.1 s to compile on 2 cores) was cached only when the machine happened to be busy,
# so a fresh process usually compiled it again: about 0.9 s of every command's start-up.
MIN_COMPILE_TIME_SECS = 0.0

_executables_dir: pathlib.Path | None = None
_loaded: dict[str, Any] = {}  # key -> jax.stages.Compiled, for the life of the process
_uncacheable: set[str] = set()  # keys whose executable could not be serialised
_environment: str | None = None
_compile_lock = threading.Lock()


def default_dir(environ=None) -> pathlib.Path | None:
    """Where `enable` puts the cache when the user configured none; None when disabled."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in ("", "0", "off", "none", "false") else pathlib.Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "adain-jax" / "xla"


@contextlib.contextmanager
def jax_cache_hits() -> Iterator[list[str]]:
    """A list that collects one entry per JAX persistent-cache hit of the compilations in the block."""
    import jax

    hits: list[str] = []

    def listen(event: str, **_: Any) -> None:
        if event == _JAX_CACHE_HIT:
            hits.append(event)

    jax.monitoring.register_event_listener(listen)
    try:
        yield hits
    finally:
        jax.monitoring.unregister_event_listener(listen)


def enable(directory=None) -> pathlib.Path | None:
    """Turn on both caches (before the first compilation); returns the directory in use.

    ``directory`` overrides the defaults above but not a cache directory the user already set.
    Returns None when disabled or when the directory cannot be created (the caches are an
    optimisation: failing to set them up must never stop a run).
    """
    import jax

    global _executables_dir
    configured = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]  # jax's Config declares no options
    path: pathlib.Path | None
    if configured:
        path = pathlib.Path(configured)
    else:
        path = pathlib.Path(directory).expanduser() if directory is not None else default_dir()
        if path is None:
            return None
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    _executables_dir = path / EXECUTABLES
    return path


def disable_executables() -> None:
    """Stop using the executable cache in this process (JAX's own cache is left as it is)."""
    global _executables_dir
    _executables_dir = None
    _loaded.clear()


def executables_dir() -> pathlib.Path | None:
    """The executable cache's folder, or None when it is off."""
    return _executables_dir


def call(jitted: Any, fn: Callable, static_argnames: Sequence[str], args: tuple, kwargs: dict) -> Any:
    """``jitted(*args, **kwargs)``, through the executable cache when it is on and the call can be keyed.

    ``jitted`` is ``jax.jit(fn, static_argnames=static_argnames)``.
    """
    if _executables_dir is None:
        return jitted(*args, **kwargs)
    keyed = _key(fn, static_argnames, args, kwargs)
    if keyed is None:
        return jitted(*args, **kwargs)
    key, dynamic_kwargs = keyed
    compiled = _loaded.get(key)
    if compiled is not None:
        return compiled(*args, **dynamic_kwargs)
    if key in _uncacheable:
        return jitted(*args, **kwargs)
    compiled = _read(key)
    if compiled is None:
        compiled = _compile_and_write(key, fn, static_argnames, args, kwargs)
        _loaded[key] = compiled
        return compiled(*args, **dynamic_kwargs)
    import jax

    try:
        # The first run of a stored executable waits for its result, so that a failure is seen here.
        out = jax.block_until_ready(compiled(*args, **dynamic_kwargs))
    except jax.errors.JaxRuntimeError:
        # A stored executable that cannot run (a damaged or foreign file, or the XLA:CPU problem
        # described in `_compile_and_write`): drop it; the plain path compiles afresh, or raises the
        # error it would raise anyway.
        _unlink(_path(key))
        _uncacheable.add(key)
        return jitted(*args, **kwargs)
    _loaded[key] = compiled
    return out


def _key(fn: Callable, static_argnames: Sequence[str], args: tuple, kwargs: dict) -> tuple[str, dict] | None:
    """(hex key, kwargs without the static ones) for a call, or None when it cannot be keyed safely."""
    import jax

    static = {}
    if static_argnames:
        signature = _signature(fn)
        positional = list(signature.parameters)[:len(args)]
        if any(name in static_argnames for name in positional):
            return None  # static arguments are passed by keyword everywhere in adain_jax
        for name in static_argnames:
            default = signature.parameters[name].default
            static[name] = kwargs.get(name, default)
    dynamic_kwargs = {k: v for k, v in kwargs.items() if k not in static}
    if jax.config.jax_default_device is not None:  # type: ignore[attr-defined]
        return None  # placed by the user (jax.default_device): the plain path honours it
    leaves, treedef = jax.tree_util.tree_flatten((args, dynamic_kwargs))
    default_device = jax.devices()[0]
    specs = []
    for leaf in leaves:
        spec = _leaf_spec(leaf, default_device)
        if spec is None:
            return None
        specs.append(spec)
    # Settings that jax's context managers change per thread are read for every call.
    settings = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)  # type: ignore[attr-defined]
    text = repr((fn.__module__, fn.__qualname__, sorted(static.items()), str(treedef), specs, settings,
                 _environment_stamp()))
    return hashlib.sha256(text.encode()).hexdigest()[:40], dynamic_kwargs


def _leaf_spec(leaf: Any, default_device: Any) -> tuple | None:
    import jax
    import numpy as np

    if isinstance(leaf, jax.core.Tracer):
        return None
    if isinstance(leaf, jax.Array):
        # An executable is compiled for one placement: the default device's (a mesh's sharding,
        # even over that device alone, is the plain path's to honour).
        if not isinstance(leaf.sharding, jax.sharding.SingleDeviceSharding) or \
                leaf.sharding.device_set != {default_device}:
            return None
        return ("array", leaf.shape, leaf.dtype.str, leaf.weak_type)
    if isinstance(leaf, (np.ndarray, np.generic)):
        return ("numpy", leaf.shape, leaf.dtype.str)
    if type(leaf) in (bool, int, float):
        return ("python", type(leaf).__name__)
    return None


_signatures: dict[Callable, inspect.Signature] = {}


def _signature(fn: Callable) -> inspect.Signature:
    if fn not in _signatures:
        _signatures[fn] = inspect.signature(fn)
    return _signatures[fn]


def _environment_stamp() -> str:
    """Everything besides the call that decides the compiled program, computed once per process."""
    global _environment
    if _environment is None:
        import jax
        from jaxlib import version

        device = jax.devices()[0]
        backend = device.client
        # The cache's own location is not a setting of the program: a moved or copied cache still answers.
        settings = sorted((k, v) for k, v in os.environ.items()
                          if k == "XLA_FLAGS" or (k.startswith("ADAIN_JAX_") and k != ENV))
        _environment = repr((jax.__version__, version.__version__, backend.platform, backend.platform_version,
                             device.device_kind, jax.device_count(), settings, _cpu(), _source_stamp()))
    return _environment


def _cpu() -> str:
    """The CPU's instruction flags (XLA:CPU compiles for the host's instructions)."""
    import platform

    from adain_jax import cpuinfo

    return " ".join(sorted(cpuinfo.flags())) or platform.processor() or platform.machine()


def _source_stamp() -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every module and compiled part of the package: an edit is a new key."""
    stamp = []
    for folder, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".so")):
                stat = os.stat(os.path.join(folder, name))
                stamp.append((os.path.relpath(os.path.join(folder, name), _PACKAGE), stat.st_size, stat.st_mtime_ns))
    return stamp


def _path(key: str) -> pathlib.Path:
    assert _executables_dir is not None
    return _executables_dir / f"{key}{_SUFFIX}"


def _read(key: str) -> Any:
    """The stored executable for ``key``, loaded onto the default device, or None."""
    path = _path(key)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        from jax.experimental import serialize_executable

        payload, in_tree, out_tree, needs_onednn = pickle.loads(data)
        if needs_onednn:
            from adain_jax import onednn

            if not onednn.register():  # its XLA targets, for whichever type; without them the program cannot run
                return None
        compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001  # a damaged or foreign entry is a miss, never an error
        _unlink(path)
        return None
    os.utime(path)  # least recently used goes first
    return compiled


def _compile_and_write(key: str, fn: Callable, static_argnames: Sequence[str], args: tuple, kwargs: dict) -> Any:
    """Compile the call afresh, store its executable, and return it.

    Afresh, and kept out of JAX's own cache: on XLA:CPU (jaxlib 0.10.2) an executable that JAX
    loaded from its cache serialises without its code, and the reloaded copy fails with "Function
    ... not found". So the program is jitted under a name of its own (``<function>_<key>``: JAX's
    cache key covers the module's name), and JAX is told not to store it. Should JAX's cache
    answer all the same, the program runs but is not stored; so does a program with custom calls
    that only lowering registers (below).
    """
    import functools

    import jax
    from jax.experimental import serialize_executable

    @functools.wraps(fn)
    def fresh(*a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    fresh.__name__ = fresh.__qualname__ = f"{fn.__name__}_{key[:12]}"
    lowered = jax.jit(fresh, static_argnames=tuple(static_argnames)).trace(*args, **kwargs).lower()
    # The setting below is process-wide: one such compilation at a time (the web app's threads).
    with _compile_lock, jax_cache_hits() as hits:
        previous = jax.config.jax_persistent_cache_min_compile_time_secs  # type: ignore[attr-defined]
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
        try:
            compiled = lowered.compile()
        finally:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", previous)
    from adain_jax import onednn

    # A custom call's target must be registered before the program runs. JAX registers some only while
    # lowering (jaxlib's LAPACK kernels, which CORAL's eigendecomposition calls, run without them and
    # crash), and lowering is what a stored executable skips; so only programs whose targets this
    # module registers itself (the oneDNN convolution, forward and backward) are stored.
    targets = set(re.findall(r"custom_call @([\w.]+)", lowered.as_text()))
    if hits or targets - set(onednn.HANDLERS):
        _uncacheable.add(key)
        return compiled
    try:
        payload, in_tree, out_tree = serialize_executable.serialize(compiled)
        data = pickle.dumps((payload, in_tree, out_tree, bool(targets & set(onednn.HANDLERS))))
    except Exception:  # noqa: BLE001  # e.g. a program with constants, which jax cannot serialise yet
        _uncacheable.add(key)
        return compiled
    _write(_path(key), data)
    return compiled


def _write(path: pathlib.Path, data: bytes) -> None:
    from adain_jax.io import files

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    try:
        files.write_atomically(path, write, what="compiled program")
    except files.FileError:
        return  # a cache that cannot be written is only slower
    entries = sorted(path.parent.glob(f"*{_SUFFIX}"), key=_mtime)
    for stale in entries[:max(0, len(entries) - MAX_EXECUTABLES)]:
        _unlink(stale)


def _mtime(path: pathlib.Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _unlink(path: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
