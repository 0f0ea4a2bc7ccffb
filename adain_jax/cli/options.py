"""What several subcommands share: argument types, the weights and example-images defaults, loading
``--weights`` with the name of the model it holds (`load_model`, `model_line`: every command says which
model ran), and the library's refusals in the flags' words (`flag_message`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import TYPE_CHECKING

from adain_jax import examples

if TYPE_CHECKING:  # parsing stays free of JAX (adain_jax.precision imports jax.numpy)
    from adain_jax.precision import Precision


def default_images() -> pathlib.Path:
    """``--images``'s default: ``$ADAIN_JAX_EXAMPLES``, else the example images packaged with adain-jax."""
    return examples.directory()



OFFICIAL_WEIGHTS = pathlib.Path("weights/flax")  # where `make demo` and the docs put the converted official files


def default_weights() -> pathlib.Path:
    """``--weights``'s default: ``$ADAIN_JAX_WEIGHTS``, else ``weights/flax`` (the official files, converted)
    if it exists here, else the model packaged with adain-jax (`adain_jax.pretrained`) if installed, else
    ``weights/flax`` (so that the error says where the official files go)."""
    from adain_jax import pretrained  # JAX-free, like all of argument parsing

    if os.environ.get("ADAIN_JAX_WEIGHTS"):
        return pathlib.Path(os.environ["ADAIN_JAX_WEIGHTS"])
    if OFFICIAL_WEIGHTS.exists() or not pretrained.available():
        return OFFICIAL_WEIGHTS
    return pretrained.DIRECTORY


def add_weights_argument(parser: argparse.ArgumentParser, use: str = "") -> None:
    """``--weights DIR`` as every subcommand has it; ``use``: what this command does with them."""
    parser.add_argument("--weights", type=pathlib.Path, metavar="DIR", default=default_weights(),
                        help="weights directory written by convert/vgg_to_flax.py, a training workdir, or "
                             "'random' (random weights, for checking the machinery)" + (f"; {use}" if use else "")
                             + " (default: $ADAIN_JAX_WEIGHTS, else weights/flax if it exists, else the model "
                               "packaged with adain-jax)")


def alpha(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be in [0, 1], got {value}")
    return value


def weights_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise argparse.ArgumentTypeError(f"style weights must be non-negative and not all zero, got {text!r}")
    return values


def _integer_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive(text: str) -> int:
    """An integer >= 1 (a count: batch size, iterations, queue length)."""
    return _integer_at_least(text, 1)


def non_negative(text: str) -> int:
    """An integer >= 0 (an index, a step, a cutoff)."""
    return _integer_at_least(text, 0)


def size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"size must be >= 0 (0 keeps the original size), got {value}")
    return value


def tile(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, 0 or auto, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--tile must be >= 0 or auto, got {value}")
    return value


def check_tile(value) -> None:
    """ValueError naming ``--tile`` when a numeric tile is too small for the network's halo."""
    if value == "auto":
        return
    from adain_jax import tiling

    try:
        tiling.check_tile(value)
    except ValueError as e:
        raise ValueError(f"--tile {value}: {e}") from None


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    """``--content-size`` and ``--style-size`` as `adain-jax stylize` has them (the port's test-time resize)."""
    parser.add_argument("--content-size", type=size, default=512, metavar="N",
                        help="resize the content's shorter side to this (0 keeps the size; default 512)")
    parser.add_argument("--style-size", type=size, default=512, metavar="N",
                        help="resize the style's shorter side to this (0 keeps the size; default 512)")


def load_model(directory: pathlib.Path):
    """``(weights, model description, is_random)`` of ``--weights``; random weights only when asked for by
    name (``--weights random``). Unusable weights raise FileNotFoundError/ValueError (one line) as
    `adain_jax.io.weights.load_weights` does, for the command to report."""
    from adain_jax.io import weights as weights_lib

    weights = weights_lib.load_weights(directory)
    info = weights_lib.describe(directory)
    return weights, info["model"], info["kind"] == "random"


def model_line(directory: pathlib.Path) -> str | None:
    """``model: ...``, the first line of every command that uses ``--weights`` (None when they are unusable:
    the command itself then says why)."""
    from adain_jax.io import weights as weights_lib

    try:
        return f"model: {weights_lib.describe(directory)['model']}"
    except (FileNotFoundError, ValueError):
        return None


def flag_message(error: Exception, *, crop_hint: bool = True) -> str:
    """A library refusal (`controls.ControlError`, `tiling.UntiledVariantError`) in the flags' words;
    any other error as it is. ``crop_hint``: the command has ``--crop`` to suggest."""
    from adain_jax import controls, tiling

    if isinstance(error, tiling.UntiledVariantError):
        return f"{error}; pass --tile 0"
    if not isinstance(error, controls.ControlError):
        return str(error)
    d = error.detail
    words = {
        controls.BOTH: lambda: "give --style-weights (interpolation) or --mask (spatial control), not both",
        controls.TOO_FEW: lambda: "--style-weights and --mask need at least two comma-separated styles",
        controls.COUNT: lambda: f"--style-weights has {d['weights']} values for {d['num_styles']} styles",
        controls.UNCOMBINED: lambda: f"{d['num_styles']} styles given: combine them with --style-weights or --mask",
        controls.MASK_CROP: lambda: "--mask is drawn for the whole content image; it cannot be combined with --crop",
        controls.STYLE_SIZES: lambda: (
            ("with --preserve-color" if d["why"] == "preserve_color" else "for a decoder with style skips")
            + ", combined styles must have the same size after resizing" + (" (use --crop)" if crop_hint else "")
            + ": " + ", ".join(d["names"])),
    }
    return words[error.rule]() if error.rule in words else str(error)


def precision(text: str) -> Precision:
    """``--precision``: float32 or bfloat16 (also f32 / bf16)."""
    from adain_jax import precision as precision_lib

    try:
        return precision_lib.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision`` as every stylizing command has it (`adain_jax.precision`)."""
    parser.add_argument("--precision", type=precision, default="float32", metavar="float32|bfloat16",
                        help="convolution precision: float32 (default; the PyTorch port's numbers) or bfloat16 "
                             "(float32 accumulation and statistics; oneDNN on CPUs with AVX512-BF16/AMX, XLA's own "
                             "on GPU/TPU; a CPU without bfloat16 units runs float32 and says so)")


def effective_precision(args) -> Precision:
    """The precision a command runs for its ``--precision`` (`adain_jax.precision.effective`)."""
    from adain_jax import precision as precision_lib

    return precision_lib.effective(args.precision)
