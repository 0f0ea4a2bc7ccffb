"""``python -m adain_jax.augment bank``: a folder of style images -> a style bank ``.npz`` for `style_augment`.

    python -m adain_jax.augment bank --styles paintings/ --out bank.npz [--weights DIR] [--size 256]

A command, so it sits above the library it drives (it imports `adain_jax.cli.options` for
``--weights``, as every adain-jax command resolves them). The bank is written atomically: a missing
folder, a folder without images, an unreadable image or unusable weights is one line on stderr, exit
status 2, and no output file.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from adain_jax.cli import options


def build_parser() -> argparse.ArgumentParser:
    # One parser with the action as a positional (not subparsers): --help lists every option.
    parser = argparse.ArgumentParser(prog="python -m adain_jax.augment",
                                     description="Style augmentation's command: 'bank' writes the relu4_1 mean "
                                                 "and std of every image in a folder (N x 1,024 floats) to a .npz "
                                                 "that adain_jax.augment.StyleBank.load reads.")
    parser.add_argument("action", choices=["bank"], help="bank: write a style bank")
    parser.add_argument("--styles", type=pathlib.Path, required=True, metavar="FOLDER",
                        help="the style images (the files directly in FOLDER)")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="FILE",
                        help="the bank to write (.npz), atomically")
    parser.add_argument("--size", type=options.positive, default=256, metavar="N",
                        help="each image is resized to N on its shorter side and centre-cropped to N x N "
                             "(default 256, the training crops' size)")
    parser.add_argument("--batch-size", type=options.positive, default=8, metavar="N",
                        help="images encoded at once (default 8)")
    options.add_weights_argument(parser, "the encoder that measures the styles")
    options.add_precision_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adain_jax.augment import StyleBank
    from adain_jax.io import files
    from adain_jax.io import images as image_io

    try:
        paths = image_io.list_images(args.styles)  # before the weights load: a bad folder says so at once
        weights, model, _ = options.load_model(args.weights)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model: {model}", file=sys.stderr, flush=True)

    def progress(items):
        return tqdm(items, desc="style bank", unit="image", file=sys.stderr, disable=None)

    try:
        bank = StyleBank.from_folder(weights, args.styles, size=args.size, batch_size=args.batch_size,
                                     precision=options.effective_precision(args), progress=progress)
        bank.save(args.out, names=[p.name for p in paths])
    except files.FileError as e:  # images and the bank file alike: one line naming the file
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(bank)} styles x 1,024 floats")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
