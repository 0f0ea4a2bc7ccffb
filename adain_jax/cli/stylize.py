"""``adain-jax stylize``: stylize image files with every AdaIN control.

    adain-jax stylize --content photo.jpg --style a.jpg,b.jpg --style-weights 0.3,0.7 --weights weights/flax

Directories are processed content x style with a progress bar; each style is encoded once (unless
colour preservation makes every pair its own style image). A file that cannot be read is reported
and skipped, the rest are written, and the exit status is 1 if anything failed. The options become
one `adain_jax.controls.Controls`; its refusals are worded with the flags by `options.flag_message`.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Any

import numpy as np

from adain_jax.cli import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", required=True, type=pathlib.Path, metavar="FILE|DIR",
                        help="content image, or a directory of them")
    parser.add_argument("--style", required=True, metavar="FILE[,FILE...]|DIR",
                        help="style image, comma-separated style images (for --style-weights / --mask), "
                             "or a directory of style images")
    options.add_weights_argument(parser)
    parser.add_argument("--alpha", type=options.alpha, default=1.0, metavar="A",
                        help="degree of stylization in [0, 1]: 0 reconstructs the content (default: 1)")
    parser.add_argument("--style-weights", type=options.weights_list, default=None, metavar="W1,W2,...",
                        help="interpolate between the comma-separated styles with these weights "
                             "(floats, normalised to sum 1); writes <content>_interpolation.<ext>")
    parser.add_argument("--preserve-color", action="store_true",
                        help="keep the content's colours (CORAL of each style image onto the content)")
    parser.add_argument("--mask", type=pathlib.Path, default=None, metavar="FILE",
                        help="spatial control: with 2 styles a binary mask (white = first style, "
                             "black = second); with K > 2 styles a label image with values 0..K-1")
    options.add_size_arguments(parser)
    options.add_precision_argument(parser)
    parser.add_argument("--tile", type=options.tile, default="auto", metavar="N|auto",
                        help="stylize in N x N pixel tiles, exactly equal to the untiled result, in memory "
                             "bounded by the tile (0: never tile; default auto: tile only an image that "
                             "would not fit in the available memory)")
    parser.add_argument("--crop", action="store_true", help="centre-crop content and style to square after resizing")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("outputs"), metavar="DIR",
                        help="output directory (default: outputs)")
    parser.add_argument("--ext", default="jpg", help="output image format/extension (default: jpg)")


HELP = "stylize images"
DESCRIPTION = ("Stylize content image(s) with style image(s). Outputs are named <content>_stylized_<style>.<ext> "
               "(interpolation: <content>_interpolation.<ext>).")
EPILOG = """examples:
  adain-jax stylize --content cornell.jpg --style woman_with_hat_matisse.jpg --alpha 0.8
  adain-jax stylize --content photos/ --style styles/ --output out/          # every content x style
  adain-jax stylize --content chicago.jpg --style a.jpg,b.jpg,c.jpg --style-weights 0.5,0.3,0.2
  adain-jax stylize --content newyork.jpg --style brushstrokes.jpg --preserve-color
  adain-jax stylize --content blonde_girl.jpg --style a.jpg,b.jpg --mask mask.png --content-size 0

exit status: 0 all written, 1 some inputs failed (the rest were written), 2 bad arguments or weights.
"""


@dataclasses.dataclass
class Job:
    """One output image: a content file with one style file, or with K styles combined, and the
    controls (`adain_jax.controls.Controls`) shared by every job of a run."""

    content: pathlib.Path
    styles: tuple[pathlib.Path, ...]
    output: pathlib.Path
    controls: Any = None


def controls_from(args, num_styles: int):
    """The `Controls` the arguments ask for (``alpha`` and ``preserve_color`` when ``args`` has them);
    ValueError in the flags' words."""
    from adain_jax import controls

    try:
        return controls.Controls(num_styles=num_styles, alpha=getattr(args, "alpha", 1.0),
                                 style_weights=args.style_weights, masked=args.mask is not None,
                                 preserve_color=getattr(args, "preserve_color", False), crop=args.crop)
    except controls.ControlError as e:
        raise ValueError(options.flag_message(e)) from None


def _expand(path: pathlib.Path) -> list[pathlib.Path]:
    from adain_jax.io import images as image_io

    return image_io.list_images(path) if path.is_dir() else [path]


def plan_jobs(args) -> list[Job]:
    """Every output to write, with argument errors raised as ValueError before any work starts."""
    contents = _expand(args.content)
    style_arg = pathlib.Path(args.style)
    styles = _expand(style_arg) if style_arg.is_dir() else [pathlib.Path(s) for s in args.style.split(",")]
    if args.crop and (args.content_size == 0 or args.style_size == 0):
        raise ValueError("--crop needs --content-size and --style-size > 0")
    combined = args.style_weights is not None or args.mask is not None
    ctl = controls_from(args, len(styles) if combined else 1)
    if ctl.combined:
        return [Job(c, tuple(styles), args.output / ctl.output_name(c.stem, [s.stem for s in styles], args.ext), ctl)
                for c in contents]
    return [Job(c, (s,), args.output / ctl.output_name(c.stem, [s.stem], args.ext), ctl)
            for c in contents for s in styles]


def _masks_for(args, job: Job, content: np.ndarray):
    from adain_jax.io import masks as mask_io

    if args.mask is None:
        return None
    return mask_io.masks_from_file(args.mask, len(job.styles), *content.shape[:2])


def run(args) -> int:
    """The ``stylize`` subcommand; returns the exit status."""
    import jax
    from tqdm import tqdm

    from adain_jax import runner
    from adain_jax.io import images as image_io
    from adain_jax.io import weights as weights_lib

    try:
        jobs = plan_jobs(args)
        options.check_tile(args.tile)
        weights = weights_lib.load_weights(args.weights)
        if args.tile not in (0, "auto"):  # an explicit tile size with a decoder that cannot tile: say so once
            from adain_jax import tiling

            tiling.check_variant(weights)
    except (ValueError, FileNotFoundError, image_io.ImageError) as e:
        print(f"error: {options.flag_message(e)}", file=sys.stderr)
        return 2
    stylizer = runner.Stylizer(weights, content_size=args.content_size, style_size=args.style_size, crop=args.crop,
                               tile=args.tile, progress=True, precision=options.effective_precision(args))
    failures = []
    bar = tqdm(total=len(jobs), desc="stylizing", unit="image", file=sys.stderr, disable=None)

    def skip(job, error):
        failures.append(str(error))
        tqdm.write(f"skipped: {error}", file=sys.stderr)
        bar.update(1)

    for batch in runner.same_size_batches(jobs, lambda job: stylizer.content(job.content), len(jax.local_devices()),
                                          skip):
        try:
            contents = np.stack([c for _, c in batch])
            masks = None if args.mask is None else np.concatenate([_masks_for(args, j, c) for j, c in batch])
            ctl = batch[0][0].controls
            outs = stylizer.run_batch(contents, [j.styles for j, _ in batch], alpha=ctl.alpha,
                                      style_weights=ctl.weights_array(), preserve_color=ctl.preserve_color,
                                      masks=masks)
        except (image_io.ImageError, ValueError, OSError) as e:
            failures.extend(options.flag_message(e) for _ in batch)
            tqdm.write(f"skipped: {options.flag_message(e)}", file=sys.stderr)
            bar.update(len(batch))
            continue
        for (job, _), out in zip(batch, outs, strict=True):
            try:
                image_io.save_image(job.output, out)
            except (image_io.ImageError, ValueError, OSError) as e:
                failures.append(str(e))
                tqdm.write(f"skipped: {e}", file=sys.stderr)
            bar.update(1)
    bar.close()
    written = len(jobs) - len(failures)
    print(f"wrote {written} image(s) to {args.output}" + (f"; {len(failures)} failed" if failures else ""))
    return 1 if failures else 0
