"""``adain-jax gatys``: style transfer by optimisation (Gatys et al.), the baseline AdaIN is compared with.

    adain-jax gatys --content cornell.jpg --style la_muse.jpg --iterations 300 --output gatys/

Each (content, style) pair is optimised on the weights' VGG by `adain_jax.quality.gatys.gatys`, one
compiled program for all iterations; pairs of the same sizes run together in batches. Outputs are
named as `adain-jax stylize` names them, so `adain-jax eval --results` scores them the same way.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import types

from adain_jax.cli import options

HELP = "style transfer by optimisation (Gatys et al.), the baseline"
DESCRIPTION = ("Optimise each output image so that its VGG features match the content (relu4_1) and the style "
               "(Gram matrices or mean/std at relu1_1..relu4_1), with L-BFGS (optax, zoom line search) or Adam, "
               "all iterations inside one compiled program. Outputs are named <content>_stylized_<style>.<ext>.")
EPILOG = """examples:
  adain-jax gatys --content cornell.jpg --style la_muse.jpg --iterations 300
  adain-jax gatys --content photos/ --style styles/ --init noise --style-loss meanstd --curves curves.json
  adain-jax gatys --content a.jpg --style b.jpg --optimizer adam --lr 0.05 --iterations 1000

exit status: 0 all written, 1 some inputs failed (the rest were written), 2 bad arguments or weights.
"""


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", required=True, type=pathlib.Path, metavar="FILE|DIR",
                        help="content image, or a directory of them")
    parser.add_argument("--style", required=True, metavar="FILE[,FILE...]|DIR",
                        help="style image(s): a file, comma-separated files, or a directory")
    options.add_weights_argument(parser, "its VGG is used")
    parser.add_argument("--iterations", type=options.positive, default=300, metavar="N",
                        help="optimiser steps (default: 300)")
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs",
                        help="lbfgs (optax.lbfgs with its zoom line search; default) or adam")
    parser.add_argument("--lr", type=float, default=0.05, metavar="LR",
                        help="Adam's learning rate on the logit scale (default: 0.05; L-BFGS uses its line search)")
    parser.add_argument("--init", choices=("content", "noise"), default="content",
                        help="start from the content image (default) or from uniform noise")
    parser.add_argument("--style-loss", choices=("gram", "meanstd"), default="gram",
                        help="Gram matrices (Gatys et al.; default) or the port's mean/std loss (AdaIN's)")
    parser.add_argument("--content-target", choices=("content", "adain"), default="content",
                        help="match relu4_1 of the content (default) or the AdaIN target adain(f(c), f(s))")
    parser.add_argument("--content-weight", type=_non_negative_float, default=1.0, metavar="W",
                        help="weight of the content loss (default: 1)")
    parser.add_argument("--style-weight", type=_non_negative_float, default=10.0, metavar="W",
                        help="weight of the style loss (default: 10, the port's training value)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (--init noise)")
    parser.add_argument("--batch", type=options.positive, default=4, metavar="B",
                        help="pairs of the same sizes optimised together (default: 4)")
    options.add_size_arguments(parser)
    parser.add_argument("--crop", action="store_true", help="centre-crop content and style to square after resizing")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("outputs"), metavar="DIR",
                        help="output directory (default: outputs)")
    parser.add_argument("--ext", default="jpg", help="output image format/extension (default: jpg)")
    parser.add_argument("--curves", type=pathlib.Path, default=None, metavar="FILE",
                        help="write every pair's loss, content_loss and style_loss per iteration as JSON")


def run(args) -> int:
    """The ``gatys`` subcommand; returns the exit status."""
    import numpy as np
    from tqdm import tqdm

    from adain_jax.cli import stylize as stylize_cli
    from adain_jax.cli.eval import _write_text
    from adain_jax.io import images as image_io
    from adain_jax.io import weights as weights_lib
    from adain_jax.quality import gatys

    plan_args = types.SimpleNamespace(content=args.content, style=args.style, ext=args.ext, crop=args.crop,
                                      content_size=args.content_size, style_size=args.style_size, mask=None,
                                      style_weights=None, output=args.output)
    try:
        jobs = stylize_cli.plan_jobs(plan_args)
        encoder = weights_lib.load_weights(args.weights)["encoder"]
    except (ValueError, FileNotFoundError, image_io.ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    failures, loaded, styles = [], [], {}
    for job in jobs:
        try:
            content = image_io.load_image(job.content, args.content_size, args.crop)
            if job.styles[0] not in styles:
                styles[job.styles[0]] = image_io.load_image(job.styles[0], args.style_size, args.crop)
            loaded.append((job, content, styles[job.styles[0]]))
        except image_io.ImageError as e:
            failures.append(str(e))
            print(f"skipped: {e}", file=sys.stderr)

    # Pairs with the same content and style sizes share one compiled program and run as one batch.
    groups: dict[tuple, list] = {}
    for item in loaded:
        groups.setdefault((item[1].shape, item[2].shape), []).append(item)
    batches = [g[i:i + args.batch] for g in groups.values() for i in range(0, len(g), args.batch)]
    curves_out = []
    index = 0
    for batch in tqdm(batches, desc="optimising", unit="batch", file=sys.stderr, disable=None):
        seeds = np.arange(index, index + len(batch)) + args.seed * 1_000_003  # a pair's noise: its position
        index += len(batch)
        images, curves = gatys.gatys(
            encoder, np.stack([c for _, c, _ in batch]), np.stack([s for _, _, s in batch]),
            iterations=args.iterations, optimizer=args.optimizer, init=args.init, style_loss=args.style_loss,
            content_target=args.content_target, content_weight=args.content_weight,
            style_weight=args.style_weight, learning_rate=args.lr, seed=seeds)
        images = np.asarray(images)
        curves = {k: np.asarray(v) for k, v in curves.items()}
        for i, (job, _, _) in enumerate(batch):
            try:
                image_io.save_image(job.output, images[i])
            except (image_io.ImageError, ValueError, OSError) as e:
                failures.append(str(e))
                tqdm.write(f"skipped: {e}", file=sys.stderr)
                continue
            curves_out.append({"content": str(job.content), "style": str(job.styles[0]), "stylized": str(job.output),
                               **{k: v[i].tolist() for k, v in curves.items()}})
            tqdm.write(f"{job.output}: loss {curves['loss'][i, 0]:.4g} -> {curves['loss'][i, -1]:.4g} "
                       f"(content {curves['content_loss'][i, -1]:.4g}, style {curves['style_loss'][i, -1]:.4g})",
                       file=sys.stderr)
    if args.curves is not None:
        settings = {k: getattr(args, k) for k in ("iterations", "optimizer", "init", "style_loss", "content_target",
                                                  "content_weight", "style_weight", "lr", "seed")}
        _write_text(args.curves, json.dumps({"settings": settings, "pairs": curves_out}, indent=2) + "\n")
    written = len(curves_out)
    print(f"wrote {written} image(s) to {args.output}" + (f"; {len(failures)} failed" if failures else ""))
    return 1 if failures else 0
