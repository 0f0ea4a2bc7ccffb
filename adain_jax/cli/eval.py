"""``adain-jax eval``: score style-transfer results with the weight-free metrics of `adain_jax.quality.metrics`.

    adain-jax eval --content photos/ --style styles/ --results out/ --json scores.json
    adain-jax eval --content photos/ --style styles/ --weights weights/flax        # stylize, then score

Results are looked up under the names `adain-jax stylize` (and `adain-jax gatys`) gives them,
``<content>_stylized_<style>.<ext>``. Without ``--results`` the pairs are stylized in memory with the
weights. A missing or unreadable file is reported, the other pairs are still scored, and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pathlib
import sys
import types

from adain_jax.cli import options

HELP = "score stylized images (content/style losses, Gram loss, SSIM, colour distance)"
DESCRIPTION = ("Score (content, style, result) triples with metrics that need no downloaded weights: the paper's "
               "content loss and mean/std style loss on the weights' VGG, the Gram style loss of Gatys et al., "
               "SSIM of the result against the content and the colour-histogram distance to the style. Prints a "
               "markdown table per pair and the means. The VGG losses depend on the weights: with anything but "
               "the official weights they compare methods run on those weights and say nothing about the "
               "official model.")
EPILOG = """examples:
  adain-jax stylize --content photos/ --style styles/ --output out/
  adain-jax eval --content photos/ --style styles/ --results out/ --json scores.json --csv scores.csv
  adain-jax eval --content cornell.jpg --style la_muse.jpg --alpha 0.5      # stylize in memory, then score

exit status: 0 all scored, 1 some pairs could not be scored (the rest were), 2 bad arguments or weights.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", required=True, type=pathlib.Path, metavar="FILE|DIR",
                        help="content image, or a directory of them")
    parser.add_argument("--style", required=True, metavar="FILE[,FILE...]|DIR",
                        help="style image(s): a file, comma-separated files, or a directory")
    parser.add_argument("--results", type=pathlib.Path, default=None, metavar="DIR",
                        help="directory of results named <content>_stylized_<style>.<ext>; without it the "
                             "pairs are stylized with --weights")
    options.add_weights_argument(parser, "its VGG computes the losses, its decoder stylizes when --results "
                                         "is not given")
    parser.add_argument("--alpha", type=options.alpha, default=1.0, metavar="A",
                        help="degree of stylization when stylizing here (default: 1)")
    options.add_size_arguments(parser)
    parser.add_argument("--crop", action="store_true", help="centre-crop content and style to square after resizing")
    parser.add_argument("--ext", default="jpg", help="extension of the result files (default: jpg); a result "
                                                     "with the same name and another image extension is found too")
    parser.add_argument("--json", type=pathlib.Path, default=None, metavar="FILE",
                        help="write one record per pair (paths and every metric) and the means as JSON")
    parser.add_argument("--csv", type=pathlib.Path, default=None, metavar="FILE",
                        help="write the same as a CSV table (last row: the means)")


def _write_text(path: pathlib.Path, text: str) -> None:
    """Atomically: a temporary file in the same directory, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _find_result(expected: pathlib.Path) -> pathlib.Path:
    from adain_jax.io import images as image_io

    if expected.is_file():
        return expected
    for ext in image_io.IMAGE_EXTENSIONS:
        other = expected.with_suffix(ext)
        if other.is_file():
            return other
    raise image_io.ImageError(expected, "no result file for this pair (expected this name, as adain-jax stylize "
                                        "writes it)")


def _load_result(path: pathlib.Path, height: int, width: int):
    """The result as float32 (H, W, 3), resized (PIL bilinear) to the content's size if it differs."""
    from PIL import Image

    from adain_jax.io import images as image_io

    image = image_io.open_rgb(path)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return image_io.to_array(image)


def _weights_note(directory: pathlib.Path) -> str:
    from adain_jax.io import weights as weights_lib

    try:
        official = weights_lib.describe(directory)["official"]
    except (OSError, ValueError):
        official = False
    if official:
        return f"VGG losses on the official weights ({directory})."
    return (f"VGG losses on the weights in {directory}, which are NOT the official ones: they compare results "
            "scored on these same weights and say nothing about the official model.")


def _table(records, means, metric_names) -> str:
    head = ["content", "style", *list(metric_names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        lines.append("| " + " | ".join([pathlib.Path(r["content"]).name, pathlib.Path(r["style"]).name]
                                       + [f"{r[m]:.6g}" for m in metric_names]) + " |")
    if means:
        lines.append("| **mean** | |" + "".join(f" {means[m]:.6g} |" for m in metric_names))
    return "\n".join(lines)


def run(args) -> int:
    """The ``eval`` subcommand; returns the exit status."""
    import numpy as np
    from tqdm import tqdm

    from adain_jax import runner
    from adain_jax.cli import stylize as stylize_cli
    from adain_jax.io import images as image_io
    from adain_jax.io import weights as weights_lib
    from adain_jax.quality import metrics

    plan_args = types.SimpleNamespace(content=args.content, style=args.style, ext=args.ext, crop=args.crop,
                                      content_size=args.content_size, style_size=args.style_size, mask=None,
                                      style_weights=None, output=args.results or pathlib.Path("."))
    try:
        jobs = stylize_cli.plan_jobs(plan_args)
        weights = weights_lib.load_weights(args.weights)
    except (ValueError, FileNotFoundError, image_io.ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stylizer = runner.Stylizer(weights, content_size=args.content_size, style_size=args.style_size, crop=args.crop)
    names = metrics.METRICS
    records: list[dict[str, str | float | None]] = []
    failures: list[dict[str, str | None]] = []
    for job in tqdm(jobs, desc="scoring", unit="pair", file=sys.stderr, disable=None):
        style_path = job.styles[0]
        stylized = str(job.output) if args.results is not None else None
        try:
            content = stylizer.content(job.content)
            style = stylizer.style(style_path)
            if args.results is not None:
                found = _find_result(job.output)
                stylized = str(found)
                result = _load_result(found, *content.shape[:2])
            else:
                result = stylizer.run(content, job.styles, alpha=args.alpha)
            scores = metrics.evaluate(weights["encoder"], content[None], style[None], result[None])
        except (image_io.ImageError, ValueError, OSError) as e:
            failures.append({"content": str(job.content), "style": str(style_path), "stylized": stylized,
                             "error": str(e)})
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            continue
        record: dict[str, str | float | None] = {"content": str(job.content), "style": str(style_path),
                                                 "stylized": stylized}
        record.update({m: float(np.asarray(scores[m])[0]) for m in names})
        records.append(record)

    means = {m: float(np.mean([r[m] for r in records])) for m in names} if records else {}
    note = _weights_note(args.weights)
    print(_table(records, means, names))
    print(f"\n{len(records)} pair(s) scored" + (f", {len(failures)} failed" if failures else "") + f". {note}")
    if args.json is not None:
        _write_text(args.json, json.dumps({"pairs": records, "mean": means, "failed": failures,
                                           "metrics": list(names), "weights": str(args.weights), "note": note},
                                          indent=2) + "\n")
    if args.csv is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["content", "style", "stylized", *names], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        if means:
            writer.writerow({"content": "mean", "style": "", "stylized": "", **means})
        _write_text(args.csv, buf.getvalue())
    return 1 if failures else 0
