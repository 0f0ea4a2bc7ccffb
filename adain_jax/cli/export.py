"""``adain-jax export``: write the model as portable artifacts (StableHLO or ONNX), weights embedded.

    adain-jax export --weights weights/flax --format stablehlo --output exported/

Writes ``style_moments``, ``transfer`` and ``stylize`` (see `adain_jax.export`) to OUTDIR, all or
none. A missing or damaged weights directory or an unwritable OUTDIR is one line on stderr and exit
status 2 before any work; an unknown format is an argument error (status 2).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from adain_jax.cli import options

HELP = "export the model as StableHLO or ONNX files"
DESCRIPTION = """Export the model with its weights embedded, as OUTDIR/<name>.stablehlo (jax.export
serialization) or OUTDIR/<name>.onnx, for three functions:
  style_moments(style) -> (mean, std)
  transfer(content, mean, std, alpha) -> image
  stylize(content, style, alpha) -> image
Images are NHWC float32 in [0, 1], any batch, height and width >= 9; alpha is a float32 scalar."""
EPILOG = """examples:
  adain-jax export --weights weights/flax --format stablehlo --output exported/
  adain-jax export --weights weights/flax --format onnx --output exported/ --only style_moments,transfer
"""

_FORMATS = ("stablehlo", "onnx")  # adain_jax.export.FORMATS, without importing JAX for --help
_NAMES = ("style_moments", "transfer", "stylize")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(_NAMES)}, got {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_weights_argument(parser)
    parser.add_argument("--format", required=True, choices=_FORMATS,
                        help="stablehlo: jax.export serialization (needs only JAX to run); onnx: via jax2onnx")
    parser.add_argument("--output", type=pathlib.Path, required=True, metavar="OUTDIR",
                        help="directory for <name>.stablehlo or <name>.onnx (created if needed)")
    parser.add_argument("--only", type=_names, default=list(_NAMES), metavar="NAME[,NAME...]",
                        help=f"export only these of {','.join(_NAMES)} (default: all three)")


def _weights_note(directory: pathlib.Path) -> str:
    from adain_jax.io import weights as weights_lib

    if weights_lib.describe(directory)["official"]:
        return "official weights"
    return f"weights from {directory} (not the official files: artifacts made with them are not the paper's model)"


def run(args) -> int:
    """The ``export`` subcommand; returns the exit status."""
    from adain_jax import extras

    if args.format == "onnx":
        extras.exit_if_missing("export", "adain-jax export --format onnx")
    from tqdm import tqdm

    from adain_jax import export as export_lib
    from adain_jax.io import weights as weights_lib

    try:
        weights = weights_lib.load_weights(args.weights)
        note = _weights_note(args.weights)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        export_lib.check_writable(args.output)
    except OSError as e:
        print(f"error: {args.output}: cannot write the artifacts there ({e.strerror or e})", file=sys.stderr)
        return 2

    def progress(names):
        return tqdm(names, desc=f"exporting {args.format}", unit="function", file=sys.stderr, disable=None)

    try:
        paths = export_lib.export_model(weights, args.output, args.format, names=args.only, progress=progress)
    except OSError as e:
        print(f"error: {args.output}: could not write the artifacts ({e.strerror or e}); nothing was written",
              file=sys.stderr)
        return 1
    print(f"exported with {note}:")
    for path in paths.values():
        print(f"  {path}  ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
