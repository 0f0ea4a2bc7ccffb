"""``python -m adain_jax.onednn.build``: compile ``_onednn_conv.so`` into the package directory.

Inputs: ``csrc/onednn_conv.cc``, oneDNN's headers and library from the PyPI packages
``onednn-devel-cpu-gomp`` / ``onednn-cpu-gomp``, jaxlib's XLA FFI headers (`jax.ffi.include_dir`)
and a C++17 compiler (``$CXX`` or ``g++``). Prints one line: what it built, that the library is
already up to date (same command, newer than the source), or why it cannot build. A machine that
cannot build is not an error (exit 0, and `adain_jax.onednn.conv` falls back to XLA) unless
``--strict`` is given; the compiler writes into a temporary folder and the library reaches its name
through `adain_jax.io.files.write_atomically`, so a failed build never leaves a broken one.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import BinaryIO

from adain_jax import onednn
from adain_jax.io import files

SOURCE = onednn.PACKAGE_DIR / "csrc" / "onednn_conv.cc"
STAMP = onednn.LIBRARY.with_suffix(".cmd")  # the command that built the library, for idempotence
HEADERS_DISTRIBUTION = "onednn-devel-cpu-gomp"


class CannotBuild(RuntimeError):
    pass


def _dnnl_include() -> pathlib.Path:
    from importlib import metadata

    try:
        files = metadata.files(HEADERS_DISTRIBUTION) or ()
    except metadata.PackageNotFoundError:
        raise CannotBuild(f"{HEADERS_DISTRIBUTION} is not installed") from None
    for file in files:
        if file.as_posix().endswith("oneapi/dnnl/dnnl.hpp"):
            return pathlib.Path(file.locate()).resolve().parents[2]
    raise CannotBuild(f"{HEADERS_DISTRIBUTION} has no oneapi/dnnl/dnnl.hpp")


def command(output: pathlib.Path) -> list[str]:
    """The compiler command line, or `CannotBuild` with the reason."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise CannotBuild(f"the oneDNN path is built for x86-64 Linux only, not {sys.platform}/{platform.machine()}")
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise CannotBuild("no C++ compiler (set CXX or install g++)")
    library = onednn.dnnl_library()
    if library is None:
        raise CannotBuild(f"{onednn.DNNL_DISTRIBUTION} (libdnnl.so.3) is not installed")
    include = _dnnl_include()
    import jax

    return [cxx, "-O2", "-DNDEBUG", "-std=c++17", "-fopenmp", "-shared", "-fPIC", "-fvisibility=hidden",
            "-Wno-return-type",  # XLA's api.h has switch-only functions that gcc warns about
            f"-I{include}", f"-I{jax.ffi.include_dir()}", str(SOURCE), str(library),
            f"-Wl,-rpath,{library.parent}", "-o", str(output)]


def up_to_date() -> bool:
    try:
        return (onednn.LIBRARY.stat().st_mtime >= SOURCE.stat().st_mtime
                and STAMP.read_text() == shlex.join(command(onednn.LIBRARY)))
    except (OSError, CannotBuild):
        return False


def build(force: bool = False) -> str:
    """Build the library if it is missing or stale; returns the line to print. Raises `CannotBuild`."""
    if not force and up_to_date():
        return f"{onednn.LIBRARY} is up to date"
    with tempfile.TemporaryDirectory(prefix="adain_onednn_") as tmp:
        output = pathlib.Path(tmp) / onednn.LIBRARY.name
        cmd = command(output)
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise CannotBuild(f"the compiler does not run ({cmd[0]}): {e}") from None
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            first_error = next((line for line in lines if "error" in line), lines[-1] if lines else "")
            reason = first_error.strip() or f"exit status {proc.returncode}"
            raise CannotBuild(f"the compiler failed ({cmd[0]}): {reason}")
        seconds = time.perf_counter() - start

        def write_library(handle: BinaryIO) -> None:
            handle.write(output.read_bytes())

        def write_stamp(handle: BinaryIO) -> None:
            handle.write(shlex.join(command(onednn.LIBRARY)).encode())

        try:
            files.write_atomically(onednn.LIBRARY, write_library, what="library")
            files.write_atomically(STAMP, write_stamp, what="build command")
        except files.FileError as e:
            raise CannotBuild(str(e)) from None
    return f"built {onednn.LIBRARY} in {seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adain_jax.onednn.build", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the library cannot be built")
    args = parser.parse_args(argv)
    try:
        print(build(force=args.force))
    except CannotBuild as e:
        print(f"adain_jax.onednn.build: not built: {e} (the convolutions will use XLA)")
        return 1 if args.strict else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
