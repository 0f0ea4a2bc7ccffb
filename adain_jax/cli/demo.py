"""``adain-jax demo``: stylize example pairs with several controls and write a contact sheet.

Uses the example images packaged with adain-jax (`adain_jax.examples`), or any folder with
``content/`` and ``style/`` subfolders given by ``--images`` or ``$ADAIN_JAX_EXAMPLES`` (the reference
repositories' images, say), and the weights ``--weights`` resolves to: the official files converted to
``weights/flax`` when they are there, else the model packaged with adain-jax. The sheet's header and
the terminal name the model; ``--weights random`` runs randomly initialised weights, labelled as such
(the pictures then show the pipeline, not style transfer).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np

from adain_jax.cli import options

HELP = "stylize example pairs with several controls and write a contact sheet"
DESCRIPTION = ("Stylize example content x style pairs with several controls and write the results plus "
               "outputs/contact_sheet.jpg, named after the model that made them.")



@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    content: str
    styles: tuple[str, ...]
    label: str
    alpha: float = 1.0
    style_weights: tuple[float, ...] | None = None
    preserve_color: bool = False
    mask: str | None = None


# Showcase pairs, each used when its files are present: first the packaged examples
# (adain_jax/examples), then the paper's and the reference repositories' pairs.
CURATED = (
    Example("astronaut_hubble", "astronaut.jpg", ("hubble_deep_field.jpg",), "alpha 1"),
    Example("chelsea_immunohistochemistry", "chelsea.jpg", ("immunohistochemistry.jpg",), "alpha 1"),
    Example("coffee_retina_alpha0.5", "coffee.jpg", ("retina.jpg",), "alpha 0.5", alpha=0.5),
    Example("rocket_hubble_preserve", "rocket.jpg", ("hubble_deep_field.jpg",), "preserve colour",
            preserve_color=True),
    Example("chelsea_interpolation", "chelsea.jpg", ("hubble_deep_field.jpg", "immunohistochemistry.jpg",
            "brick.jpg"), "interpolation .5/.3/.2", style_weights=(0.5, 0.3, 0.2)),
    Example("astronaut_mask", "astronaut.jpg", ("retina.jpg", "brick.jpg"), "spatial mask",
            mask="astronaut_mask.png"),
    Example("cornell_matisse", "cornell.jpg", ("woman_with_hat_matisse.jpg",), "alpha 1"),
    Example("lenna_en_campo_gris", "lenna.jpg", ("en_campo_gris.jpg",), "alpha 1"),
    Example("sailboat_sketch", "sailboat.jpg", ("sketch.png",), "alpha 1"),
    Example("avril_picasso_alpha0.5", "avril.jpg", ("picasso_self_portrait.jpg",), "alpha 0.5", alpha=0.5),
    Example("newyork_brushstrokes_preserve", "newyork.jpg", ("brushstrokes.jpg",), "preserve colour",
            preserve_color=True),
    Example("chicago_interpolation", "chicago.jpg", ("picasso_self_portrait.jpg", "la_muse.jpg", "trial.jpg"),
            "interpolation .5/.3/.2", style_weights=(0.5, 0.3, 0.2)),
    Example("blonde_girl_mask", "blonde_girl.jpg", ("woman_in_peasant_dress_cropped.jpg", "mondrian_cropped.jpg"),
            "spatial mask", mask="mask.png"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=pathlib.Path, default=options.default_images(), metavar="DIR",
                        help="folder with content/, style/ (and optionally mask/) subfolders (default: "
                             "$ADAIN_JAX_EXAMPLES, else the example images packaged with adain-jax)")
    options.add_weights_argument(parser)
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("outputs"),
                        help="where results and contact_sheet.jpg go (default: outputs)")
    parser.add_argument("--size", type=int, default=384,
                        help="shorter side of content and style images (default: 384; the paper uses 512)")


def choose_examples(images: pathlib.Path) -> list[Example]:
    """The curated showcase where its files exist, else generic pairs from whatever is there."""
    from adain_jax.io import images as image_io

    content_dir, style_dir, mask_dir = images / "content", images / "style", images / "mask"
    for d in (content_dir, style_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: missing; --images must hold content/ and style/ subfolders")
    chosen = [e for e in CURATED
              if (content_dir / e.content).exists() and all((style_dir / s).exists() for s in e.styles)
              and (e.mask is None or (mask_dir / e.mask).exists())]
    if chosen:
        return chosen
    contents = image_io.list_images(content_dir)[:3]
    styles = image_io.list_images(style_dir)[:3]
    examples = [Example(f"{c.stem}_{s.stem}", c.name, (s.name,), "alpha 1")
                for c, s in zip(contents, styles, strict=False)]
    c, s = contents[0], styles[0]
    examples.append(Example(f"{c.stem}_{s.stem}_alpha0.5", c.name, (s.name,), "alpha 0.5", alpha=0.5))
    examples.append(Example(f"{c.stem}_{s.stem}_preserve", c.name, (s.name,), "preserve colour", preserve_color=True))
    if len(styles) >= 2:
        examples.append(Example(f"{c.stem}_interpolation", c.name, (styles[0].name, styles[1].name),
                                "interpolation .5/.5", style_weights=(0.5, 0.5)))
    return examples


def run(args) -> int:
    from tqdm import tqdm

    from adain_jax.io import images as image_io
    from adain_jax.io import sheets
    from adain_jax.io.masks import masks_from_file
    from adain_jax.runner import Stylizer

    try:
        examples = choose_examples(args.images)
    except (FileNotFoundError, image_io.ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        weights, description, is_random = options.load_model(args.weights)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Square crops share one shape, so most examples reuse one compiled program; the mask
    # example keeps its full frame because the mask is drawn for the whole content image.
    cropped = Stylizer(weights, content_size=args.size, style_size=args.size, crop=True)
    framed = Stylizer(weights, content_size=args.size, style_size=args.size, crop=False)
    content_dir, style_dir = args.images / "content", args.images / "style"
    rows, captions, failures = [], [], 0
    start = time.perf_counter()
    for ex in tqdm(examples, desc="demo", unit="image", file=sys.stderr, disable=None):
        stylizer = framed if ex.mask else cropped
        styles = [style_dir / s for s in ex.styles]
        try:
            content = stylizer.content(content_dir / ex.content)
            masks = None
            if ex.mask:
                masks = masks_from_file(args.images / "mask" / ex.mask, len(styles), *content.shape[:2])
            weights_arg = np.asarray(ex.style_weights, np.float32) if ex.style_weights else None
            out = stylizer.run(content, styles, alpha=ex.alpha, style_weights=weights_arg,
                               preserve_color=ex.preserve_color, masks=masks)
            image_io.save_image(args.output / f"{ex.name}.jpg", out)
        except (image_io.ImageError, ValueError, OSError) as e:
            failures += 1
            tqdm.write(f"skipped {ex.name}: {e}", file=sys.stderr)
            continue
        style_cells = [stylizer.style(s) for s in styles][:3]
        rows.append([content, *style_cells, *[None] * (3 - len(style_cells)), out])
        captions.append(f"{ex.name}: {ex.label}")
    elapsed = time.perf_counter() - start
    header = f"adain-jax demo - {description} - size {args.size}"
    labels = ["content", "style", "style 2", "style 3", "result"]
    sheet = sheets.contact_sheet(rows, labels=labels, cell=192, header=header, row_labels=captions)
    sheet_path = args.output / "contact_sheet.jpg"
    image_io.save_image(sheet_path, sheet)
    print(f"wrote {len(rows)} result(s) and {sheet_path} in {elapsed:.1f} s ({description})"
          + (f"; {failures} failed" if failures else ""))
    if is_random:
        print("NOTE: these used RANDOM weights, as asked: they show the pipeline, not style transfer.")
    return 1 if failures else 0
