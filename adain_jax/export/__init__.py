"""Portable artifacts of the model: serialized StableHLO (`jax.export`) or ONNX, weights embedded.

    from adain_jax.export import export_model
    paths = export_model(adain_jax.load_weights("weights/flax"), "exported/", "stablehlo")

Three functions are exported, split as Magenta splits its arbitrary-style model:
``style_moments(style) -> (mean, std)``, ``transfer(content, mean, std, alpha) -> image`` and the
one-call ``stylize(content, style, alpha) -> image`` (images NHWC float32 in [0, 1], alpha a float32
scalar, mean/std (N, 512)). Batch, height and width are symbolic, with H, W >= 9
(`graph.MIN_SIZE`); see `adain_jax.export.graph` for the traced functions, `stablehlo` and
`onnx` for the two formats. All artifacts are written or none: each goes to a temporary file in the
output directory, and the files are renamed into place only once every export has succeeded.
"""

from __future__ import annotations

import importlib
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence

FORMATS = {"stablehlo": ".stablehlo", "onnx": ".onnx"}  # format -> file suffix
NAMES = ("style_moments", "transfer", "stylize")


def _format_module(fmt: str):
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return importlib.import_module(f"adain_jax.export.{fmt}")


def check_writable(directory) -> pathlib.Path:
    """Create ``directory`` if needed and prove a file can be made there; OSError names the problem."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".adain-jax-export-probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    return directory


def write_all(files: dict[pathlib.Path, bytes]) -> None:
    """Write every file or none: temporary siblings first, fsynced, then renamed into place.

    Should a rename fail after others succeeded, the renamed ones are removed again, so the
    directory never holds a mix of new and missing artifacts.
    """
    temps: list[pathlib.Path] = []
    placed: list[pathlib.Path] = []
    try:
        for path, data in files.items():
            temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            temps.append(temp)
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for temp, path in zip(temps, files, strict=True):
            os.replace(temp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def export_model(weights, output_dir, fmt: str, names: Sequence[str] = NAMES,
                 progress: Callable[[Iterable[str]], Iterable[str]] | None = None) -> dict[str, pathlib.Path]:
    """Export ``names`` with ``weights`` embedded to ``output_dir/<name><suffix>``; returns name -> path.

    ``progress`` wraps the iteration over names (e.g. ``tqdm``). Raises ValueError for an unknown
    format or name, OSError when the directory cannot be written (checked before any work).
    """
    module = _format_module(fmt)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown export {', '.join(unknown)}; choose among {', '.join(NAMES)}")
    directory = check_writable(output_dir)
    blobs = {}
    for name in (progress or (lambda x: x))(list(names)):
        blobs[directory / f"{name}{FORMATS[fmt]}"] = module.export_bytes(weights, name)
    write_all(blobs)
    return {name: directory / f"{name}{FORMATS[fmt]}" for name in names}
