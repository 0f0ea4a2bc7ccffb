"""The documentation's pictures (docs/images/), made from what really runs on a CPU.

    python -m docs.figures                                      # every picture, into docs/images/
    python -m docs.figures --only demo,webapp,seams,flicker,heldout --heldout data/open/heldout
    python -m docs.figures --only seams,flicker                 # a subset
    python -m docs.figures --quick --output /tmp/figures        # tiny sizes and steps (the test)

The stylizing pictures use the model a command run from the repository root loads without
``--weights`` (`adain_jax.cli.options.default_weights`: ``$ADAIN_JAX_WEIGHTS``, else ``weights/flax``
when it exists, else the model packaged with adain-jax, `adain_jax.pretrained`); for the committed
pictures, the packaged model. Their caption bands name it (`adain_jax.io.weights.describe`'s
``model``), and ``model: ...`` is printed first. Pictures (``--only`` names):

* ``demo``: ``demo.png``, the contact sheet of ``adain-jax demo`` (the README's picture), scaled down.
* ``webapp``: ``webapp.png``, `adain-jax serve` on 127.0.0.1 in headless Chromium through Playwright,
  with a content and a style filled in and the result shown; the page must name the same model (and
  show no RANDOM WEIGHTS banner unless random weights were asked for).
* ``heldout``: ``heldout_grid.png``, contents (rows) x styles (columns) that training never read,
  stylized by `adain_jax.stylize`, then for the first pair an alpha sweep (0, 0.25, 0.5, 0.75, 1),
  colour preservation, interpolation between the first two styles (the second's weight 0.25, 0.5,
  0.75) and a spatial mask (``mask/<content>_mask.png`` when the set has one, as the packaged
  astronaut does; else the two styles on the left and right halves). The images: ``--heldout DIR`` (a
  folder with ``content/`` and ``style/``, e.g. the held-out split of ``python -m train.debian_data``,
  ``data/open/heldout``; `HELDOUT_CONTENTS` and `HELDOUT_STYLES` are chosen when present, else
  the first by name), by default the packaged public-domain/CC0 examples (`adain_jax.examples`). The
  caption names every image with its package, licence and copyright when the recipe's
  ``manifest.json`` lies beside DIR, and says whether it is the split the model's training left out.
* ``augment``: ``augment_samples.png``, `adain_jax.augment.style_augment` on three of those contents
  with ``p=1``: three draws from a `StyleBank` of the folder's styles, two from `GaussianStyles` fitted
  to it, one from `InBatch` (docs/augment.md). The same images as ``heldout`` (``--heldout DIR``).
* ``stylegan``: ``stylegan_samples.png``, ``stylegan_mixing.png``, ``stylegan_truncation.png``, from a
  real training run on scikit-learn's digits (train/configs/stylegan_digits.py), drawn by
  `adain_jax.stylegan.pictures`. The run lives in WORKDIR/stylegan, so a rerun does not retrain.
* ``studies``: ``studies_losses.png``, the loss curves of ``python -m train.studies --study style_weight
  --random_vgg`` (WORKDIR/studies, resumed likewise): a study on a random VGG, and its band says so.
* ``seams``: ``tiling_seams.png``, `adain_jax.stylize_tiled` against `adain_jax.stylize` on one image,
  the difference amplified and its maximum written on it (and printed).
* ``training``: ``packaged_training.png``, the packaged model's training run (``--run WORKDIR``, only
  when asked for by name): its logged losses and three of its held-out sample grids.
* ``flicker``: ``flicker.png``, the per-frame warping error (`adain_jax.video.flicker`) of per-frame
  stylization, ``--smooth`` and ``--blend`` on a clip generated from one content image.

On the shared 2-core CPU, at ``nice -n 19`` beside a training run and two other jobs (load average 7 to
15), ``--only demo,webapp,seams,flicker,heldout --heldout data/open/heldout`` took 45 minutes,
most of it compiling (a quieter machine made the heldout picture alone in about 1 minute). The
studies' three 200-step trainings and the StyleGAN run took about 11 minutes more, on a quieter
machine, the first time; they are resumed after.

Every picture gets a caption band at its bottom saying what made it and with which model; a picture
made with random weights (the studies' random VGG, or ``ADAIN_JAX_WEIGHTS=random``) says so there on an
amber band (`RANDOM_BAND`), the others are grey (`PLAIN_BAND`). ``--images DIR`` is the example set
the demo, web app, seams and flicker pictures show (a folder with ``content/`` and ``style/``; default
`adain_jax.examples.directory`: ``$ADAIN_JAX_EXAMPLES``, else the packaged public-domain/CC0 images,
so that committed pictures show only those); the pair shown is `adain_jax.cli.demo.choose_examples`'
first. ``--train-images DIR`` (default: ``--images``) is what the studies run trains on: four images
a side leave it one training image after holding three out, so the docs' run takes a larger set. A
missing prerequisite (a folder, an extra, Chromium, unusable weights) is one ``error:`` line and exit
status 2 before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import pathlib
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from adain_jax import examples, extras

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "docs" / "images"
DEFAULT_WORKDIR = pathlib.Path("/tmp/adain-figures")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")

RANDOM_BAND = (255, 224, 130)  # amber: made with random weights
PLAIN_BAND = (228, 228, 228)   # grey: real (trained) weights
BAND_FONT = 15
STYLIZE_TIMEOUT = 900          # seconds the web app may take for a request (it compiles, on a shared 2-core CPU)
SEAM_AMPLIFICATION = 1e4       # |tiled - untiled| x 1e4: a difference of 1e-4 shows as white
# The heldout picture's images, chosen by name from --heldout when present (the held-out split of
# `python -m train.debian_data`: public-domain/CC0 photographs of varied structure, and four styles
# far apart: a soft painting, a flat illustration, a drawing on black, a dark storm), else the first.
HELDOUT_CONTENTS = ("endless-sky-data__nasa3.jpg", "endless-sky-data__hills2.jpg",
                    "lomiri-wallpapers-16.04__seeding_by_Clements_Engelhardt.jpg")
HELDOUT_STYLES = ("plasma-workspace-wallpapers__Autumn_contents_images_2560x1600.jpg",
                  "plasma-workspace-wallpapers__SafeLanding_contents_images_5120x2880.jpg",
                  "stellarium-data__cnc_Aratea_bg.jpg", "wesnoth-1.16-trow__trow_intro_05.jpg")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
INTERPOLATION = (0.25, 0.5, 0.75)  # the second style's weight


@dataclasses.dataclass(frozen=True)
class Settings:
    output: pathlib.Path
    workdir: pathlib.Path
    images: pathlib.Path
    train_images: pathlib.Path
    heldout: pathlib.Path | None  # None: the packaged examples
    run: pathlib.Path | None  # the training picture's workdir
    quick: bool
    stylegan_steps: int
    studies_steps: int
    weights: pathlib.Path  # the model the stylizing pictures use (`default_model`)
    model: str             # its name for a person (`adain_jax.io.weights.describe`)
    is_random: bool


# ------------------------------------------------------------------------------------------ pictures


def caption(image: np.ndarray, text: str, random_weights: bool) -> np.ndarray:
    """``image`` (HxWx3, uint8 or float in [0, 1]) with a band below it holding ``text`` (wrapped)."""
    from PIL import Image, ImageDraw, ImageFont

    from adain_jax.io.images import to_uint8

    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    width = pixels.shape[1]
    try:
        font = ImageFont.load_default(size=BAND_FONT)
    except (ImportError, OSError):  # Pillow without FreeType: the fixed-size bitmap font
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and measure.textlength(candidate, font=font) > width - 16:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    step = BAND_FONT + 5
    band = Image.new("RGB", (width, 10 + step * len(lines)), RANDOM_BAND if random_weights else PLAIN_BAND)
    draw = ImageDraw.Draw(band)
    for i, text_line in enumerate(lines):
        draw.text((8, 5 + i * step), text_line, fill=(0, 0, 0), font=font)
    return np.concatenate([pixels, np.asarray(band)], axis=0)


def save_png(path: pathlib.Path, pixels: np.ndarray, colours: int | None = None) -> int:
    """Writes ``pixels`` (uint8 HxWx3) as an optimised PNG (a ``colours``-entry palette when given),
    atomically (temporary file, then rename); returns the file's size in bytes.

    Not `adain_jax.io.images.save_image`: the docs' pictures are committed, so they are squeezed
    (palette, zlib optimisation), which that function does not offer.
    """
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if colours:
        image = image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        image.save(temp, format="PNG", optimize=True)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.stat().st_size


def plot_pixels(fig) -> np.ndarray:
    """A matplotlib figure rendered to uint8 RGB pixels (then closed)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def example_pair(images: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(content, style) files of the demo's first example pair in ``images``."""
    from adain_jax.cli.demo import choose_examples

    example = choose_examples(images)[0]
    return images / "content" / example.content, images / "style" / example.styles[0]


def default_model() -> pathlib.Path:
    """The weights a command run from the repository root loads without ``--weights``
    (`adain_jax.cli.options.default_weights`; a relative answer is made absolute there)."""
    from adain_jax.cli import options
    from adain_jax.io import weights as weights_lib

    here = pathlib.Path.cwd()
    os.chdir(ROOT)  # weights/flax is looked for where the commands run (run_command, start_server)
    try:
        chosen = options.default_weights()
    finally:
        os.chdir(here)
    return chosen if weights_lib.is_random(chosen) or chosen.is_absolute() else ROOT / chosen


_loaded: dict[pathlib.Path, object] = {}


def model_weights(s: Settings):
    """The weights of ``s.model``, loaded once."""
    import adain_jax

    if s.weights not in _loaded:
        _loaded[s.weights] = adain_jax.load_weights(s.weights)
    return _loaded[s.weights]


# ------------------------------------------------------------------------------------------- seams


def seams(s: Settings) -> dict[str, np.ndarray]:
    """Tiled against untiled stylization of one image: content, both results, the amplified difference."""
    import adain_jax
    from adain_jax import tiling
    from adain_jax.io import images as image_io
    from adain_jax.io.sheets import contact_sheet

    content_path, style_path = example_pair(s.images)
    size, tile, cell = (160, 176, 160) if s.quick else (384, 256, 256)
    content = image_io.load_image(content_path, size)
    style = image_io.load_image(style_path, 64 if s.quick else 256)
    weights = model_weights(s)
    untiled = np.asarray(adain_jax.stylize(weights, content[None], style[None]))[0]
    tiled = adain_jax.stylize_tiled(weights, content[None], style[None], tile=tile)[0]
    diff = np.abs(tiled.astype(np.float64) - untiled.astype(np.float64))
    worst = float(diff.max())
    count = len(tiling.windows(*content.shape[:2], tile))
    print(f"seams: max |tiled - untiled| = {worst:.3e} ({count} windows of {tile} px, "
          f"{content.shape[1]}x{content.shape[0]} content)")
    shown = np.clip(diff.max(axis=-1) * SEAM_AMPLIFICATION, 0.0, 1.0).astype(np.float32)
    sheet = contact_sheet([[content, untiled, tiled, shown]], cell=cell,
                          labels=["content", "stylize (untiled)", f"stylize_tiled, {tile} px tiles",
                                  f"|diff| x {SEAM_AMPLIFICATION:g}"],
                          header=f"tiled vs untiled, {count} windows: max |diff| = {worst:.1e}")
    text = (f"Model: {s.model}. Tiled minus untiled on one {content.shape[1]}x{content.shape[0]} image "
            f"({content_path.name}): max abs diff {worst:.2e} (the bound is 1e-4); any seam would show as "
            "bright lines.")
    return {"tiling_seams.png": caption(sheet, text, random_weights=s.is_random)}


# ----------------------------------------------------------------------------------------- flicker


def clip(content: np.ndarray, frames: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """uint8 frames of a camera panning across ``content`` (2 px right, 1 px down a frame) with the
    exposure jitter (gain +-6 %) and sensor noise that make per-frame stylization flicker."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(frames):
        crop = content[t:t + height, 2 * t:2 * t + width].astype(np.float32)
        gain = 1.0 + 0.06 * rng.standard_normal()
        noisy = crop * gain + rng.normal(0.0, 2.0 / 255.0, crop.shape)
        out.append(np.clip(noisy * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return out


def flicker_curves(weights, frames: list[np.ndarray], style: np.ndarray, smooth: float, blend: float):
    """{label: per-pair warping errors} for per-frame stylization, --smooth, --blend and the content."""
    from adain_jax import transfer
    from adain_jax.video import deflicker, flicker, temporal

    batch = np.stack(frames).astype(np.float32) / np.float32(255.0)
    mean, std = transfer.style_moments(weights, style[None])

    def stylized(beta: float) -> list[np.ndarray]:
        # beta = 0 is plain per-frame AdaIN (tests/test_video.py): one program for both rows.
        out, _ = temporal.stylize_smoothed(weights, batch, mean[None], std[None], temporal.initial_carry(1),
                                           False, beta, len(frames))
        return [np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8) for f in np.asarray(out)]

    plain = stylized(0.0)
    smoothed = stylized(smooth)
    filt = deflicker.FlowBlend(blend)
    blended = [filt(c, o) for c, o in zip(frames, plain, strict=True)]
    return {
        "per frame (adain-jax video)": flicker.warping_error(plain, frames).pairs,
        f"--smooth {smooth:g}": flicker.warping_error(smoothed, frames).pairs,
        f"--blend {blend:g}": flicker.warping_error(blended, frames).pairs,
        "the content clip itself (its exposure jitter included)": flicker.warping_error(frames, frames).pairs,
    }


def flicker_figure(s: Settings) -> dict[str, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adain_jax.io import images as image_io

    content_path, style_path = example_pair(s.images)
    frames, height, width = (6, 64, 96) if s.quick else (24, 192, 256)
    content = image_io.load_image(content_path, max(height + frames, width + 2 * frames))
    style = image_io.load_image(style_path, 64 if s.quick else 256)
    curves = flicker_curves(model_weights(s), clip(content, frames, height, width), style, 0.9, 0.6)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for label, pairs in curves.items():
        ax.plot(np.arange(1, len(pairs) + 1), pairs, marker=".", label=f"{label}: mean {pairs.mean():.4f}")
        print(f"flicker: {label}: mean warping error {pairs.mean():.5f}")
    ax.set_xlabel("frame pair (t, t+1)")
    ax.set_ylabel("warping error (Lai et al. 2018, DIS flow)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"flicker of a {frames}-frame {width}x{height} pan with exposure jitter, per frame pair", fontsize=10)
    fig.tight_layout()
    text = (f"Model: {s.model}. A clip made from {content_path.name} stylized with {style_path.name}; "
            "the numbers are this model's on this clip.")
    return {"flicker.png": caption(plot_pixels(fig), text, random_weights=s.is_random)}


# ----------------------------------------------------------------------------------------- heldout


def pick(folder: pathlib.Path, preferred: tuple[str, ...], count: int) -> list[pathlib.Path]:
    """``count`` images of ``folder``: the ``preferred`` names that are there, then the rest by name."""
    from adain_jax.io import images as image_io

    found = image_io.list_images(folder)
    by_name = {p.name: p for p in found}
    chosen = [by_name[name] for name in preferred if name in by_name]
    return (chosen + [p for p in found if p not in chosen])[:count]


def short_name(path: pathlib.Path) -> str:
    """A column label: the file name without the data recipe's ``package__`` prefix, the wallpapers'
    ``_contents_images_WxH`` tail and the extension."""
    return path.stem.split("__")[-1].split("_contents_images")[0]


def heldout_source(folder: pathlib.Path | None, files: list[pathlib.Path], s: Settings) -> str:
    """Where the heldout picture's images come from, for its caption: each image's package, licence and
    copyright from the data recipe's ``manifest.json`` beside ``folder`` (and whether that is the split
    the model's training left out), or the packaged examples."""
    import hashlib
    import json
    import unicodedata

    if folder is None:
        return ("the public-domain/CC0 example images packaged with adain-jax (adain_jax/examples, SOURCES.md "
                "there), which no training here reads")
    manifest_path = folder.parent / "manifest.json"
    records: dict[str, dict] = {}
    recorded = None
    if manifest_path.is_file():
        raw = manifest_path.read_bytes()
        try:
            manifest = json.loads(raw)
            records = {pathlib.PurePosixPath(r["path"]).name: r for r in manifest.get("images", [])
                       if isinstance(r, dict) and "path" in r}
        except (ValueError, TypeError, KeyError):
            records = {}
        from adain_jax.io import weights as weights_lib

        try:
            packaged = weights_lib.read_manifest(weights_lib.resolve_weights_dir(s.weights)).get("packaged") or {}
            recorded = (packaged.get("data") or {}).get("manifest_sha256") == hashlib.sha256(raw).hexdigest()
        except (FileNotFoundError, ValueError, OSError):
            recorded = None
    credits = []
    for path in files:
        r = records.get(path.name)
        owner = str(r.get("copyright")) if r else ""
        owner = owner if owner.lower().startswith(("(c)", "\u00a9")) else f"(c) {owner}"
        credits.append(f"{short_name(path)} ({r.get('package')}, {r.get('licence')}, {owner})" if r else path.name)
    held = bool(records) and all(records.get(path.name, {}).get("split") == "heldout" for path in files)
    if held and recorded:
        where = (f"the held-out split of the data set the model was trained on ({folder}: the model's manifest "
                 "records this data manifest's sha256, and training never reads this split)")
    elif held:
        where = (f"the held-out split of a data set ({folder}), not one the model's manifest records as its "
                 "training data")
    else:
        where = str(folder)
    text = f"{where}: " + "; ".join(credits)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()  # the band's font is ASCII


def heldout_masks(mask_file: pathlib.Path, content_file: pathlib.Path, size: int, a: str,
                  b: str) -> tuple[np.ndarray, str]:
    """(1, size, size, 2) masks for the content's square crop and their description: ``mask_file``
    (drawn for the whole content image, so loaded at its resized size and cropped as the content was)
    when it exists, else the left and right halves."""
    from adain_jax.io import images as image_io
    from adain_jax.io.masks import masks_from_file

    if mask_file.is_file():
        height, width = image_io.load_image(content_file, size).shape[:2]
        masks = masks_from_file(mask_file, 2, height, width)
        top, left = round((height - size) / 2.0), round((width - size) / 2.0)  # as image_io.center_crop
        return masks[:, top:top + size, left:left + size], f"{mask_file.name}, white: {a}"
    left_half = np.zeros((size, size), np.float32)
    left_half[:, : size // 2] = 1.0
    return np.stack([left_half, 1.0 - left_half], -1)[None], f"left half {a}, right half {b}"


def heldout(s: Settings) -> dict[str, np.ndarray]:
    """Held-out contents x styles stylized by the model, then the controls on the first pair."""
    import adain_jax
    from adain_jax import examples as examples_lib
    from adain_jax.io import images as image_io
    from adain_jax.io.sheets import contact_sheet

    folder = s.heldout or examples_lib.PACKAGED
    contents = pick(folder / "content", HELDOUT_CONTENTS, 3)
    styles = pick(folder / "style", HELDOUT_STYLES, 4)
    size, cell = (48, 48) if s.quick else (256, 160)
    weights = model_weights(s)
    crops = np.stack([image_io.load_image(p, size, crop=True) for p in contents])
    style_images = [image_io.load_image(p, size, crop=True) for p in styles]
    results = [np.asarray(adain_jax.stylize(weights, crops, style[None])) for style in style_images]
    rows = [[None, *style_images]] + [[crops[i], *(r[i] for r in results)] for i in range(len(contents))]
    grid = contact_sheet(rows, cell=cell, labels=["content", *map(short_name, styles)],
                         row_labels=["styles"] + [short_name(p) for p in contents],
                         header="held-out contents (rows) x styles (columns)")

    # The controls on the first pair, in the grid's cells.
    content, first, second = crops[0], style_images[0], style_images[1 % len(style_images)]
    a, b = short_name(styles[0]), short_name(styles[1 % len(styles)])
    sweep = np.asarray(adain_jax.stylize(weights, np.repeat(content[None], len(ALPHAS), 0), first[None],
                                         alpha=np.asarray(ALPHAS, np.float32)))
    kept = np.asarray(adain_jax.stylize(weights, content, first, preserve_color=True))
    both = np.stack([first, second])
    mixed = [np.asarray(adain_jax.stylize(weights, content[None], both,
                                          style_weights=np.asarray([1 - w, w], np.float32)))[0]
             for w in INTERPOLATION]
    masks, mask_text = heldout_masks(folder / "mask" / f"{contents[0].stem}_mask.png", contents[0], size, a, b)
    masked = np.asarray(adain_jax.stylize(weights, content[None], both, masks=masks))[0]
    shown_mask = np.pad(0.2 + 0.75 * masks[0, ..., 0], 2, constant_values=0.5)  # white shows on the white sheet
    name = short_name(contents[0])
    controls = contact_sheet(
        [list(sweep), [content, first, sweep[-1], kept], [first, second, *mixed],
         [content, shown_mask, first, second, masked]],
        cell=cell,
        row_labels=[f"alpha {', '.join(f'{v:g}' for v in ALPHAS)} ({name} x {a})",
                    "colour preservation: content, style, result, result with preserve_color",
                    f"interpolation: {a}, {b}, then {b}'s weight " + ", ".join(f"{w:g}" for w in INTERPOLATION),
                    f"spatial mask ({mask_text}): content, mask, {a}, {b}, result"])
    width = max(grid.shape[1], controls.shape[1])
    sheet = np.concatenate([np.pad(part, ((0, 0), (0, width - part.shape[1]), (0, 0)), constant_values=1.0)
                            for part in (grid, controls)])
    source = heldout_source(s.heldout, [*contents, *styles], s)
    text = (f"Model: {s.model}. adain_jax.stylize at {size} px (square crops in the grid). Images: {source}.")
    print(f"heldout: {len(contents)} contents x {len(styles)} styles from {folder}")
    return {"heldout_grid.png": caption(sheet, text, random_weights=s.is_random)}


# ----------------------------------------------------------------------------------------- augment


AUGMENT_DRAWS = (("StyleBank", 3), ("GaussianStyles", 2), ("InBatch", 1))  # columns: source, draws


def augment(s: Settings) -> dict[str, np.ndarray]:
    """`adain_jax.augment.style_augment` on a batch of held-out contents (p=1, so that every image is
    stylized; the default alpha range): one column per call, each with its own key."""
    import jax

    from adain_jax import examples as examples_lib
    from adain_jax.augment import GaussianStyles, InBatch, StyleBank, style_augment
    from adain_jax.io import images as image_io
    from adain_jax.io.sheets import contact_sheet

    folder = s.heldout or examples_lib.PACKAGED
    contents = pick(folder / "content", HELDOUT_CONTENTS, 3)
    size, cell = (48, 48) if s.quick else (224, 160)
    weights = model_weights(s)
    batch = np.stack([image_io.load_image(p, size, crop=True) for p in contents])
    bank = StyleBank.from_folder(weights, folder / "style", size=64 if s.quick else 256)
    sources = {"StyleBank": bank, "GaussianStyles": GaussianStyles.fit(bank), "InBatch": InBatch("random")}
    columns, labels, key = [batch], ["input"], jax.random.key(0)
    for name, draws in AUGMENT_DRAWS:
        for i in range(draws):
            key, sub = jax.random.split(key)
            columns.append(np.asarray(style_augment(sub, batch, sources[name], weights=weights, p=1.0)))
            labels.append(f"{name} {i + 1}")
    rows = [[column[r] for column in columns] for r in range(len(contents))]
    sheet = contact_sheet(rows, cell=cell, labels=labels, row_labels=[short_name(p) for p in contents],
                          header="style_augment(key, images, source, weights=..., p=1.0), one key per column")
    text = (f"Model: {s.model}. {size} px square crops; the bank: the {len(bank.mean)} style images of "
            f"{folder / 'style'}; GaussianStyles fitted to it; InBatch: another image of the batch. "
            f"Images: {heldout_source(s.heldout, [*contents, *image_io.list_images(folder / 'style')], s)}.")
    print(f"augment: {len(contents)} contents, a bank of {len(bank.mean)} styles from {folder / 'style'}")
    return {"augment_samples.png": caption(sheet, text, random_weights=s.is_random)}


# ---------------------------------------------------------------------------------------- stylegan


def run_command(command: list[str], what: str) -> None:
    """Runs a repository command (cwd: the repository root); RuntimeError naming it if it fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"{what}: {' '.join(command)}", flush=True)
    result = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{what}: `{' '.join(command)}` exited with status {result.returncode}")


def stylegan_run(s: Settings) -> tuple[pathlib.Path, int]:
    """The workdir of a finished digits run of ``stylegan_steps`` steps (trained now if it is not there)."""
    from adain_jax.stylegan import checkpoint

    workdir = s.workdir / ("stylegan-quick" if s.quick else "stylegan")
    steps = s.stylegan_steps
    if steps not in (checkpoint.generator_steps(workdir) if workdir.exists() else []):
        command = ["python", "-m", "train.main", "--config", "train/configs/stylegan_digits.py",
                   "--workdir", str(workdir), f"--config.num_steps={steps}", "--config.progress_bar=False"]
        if s.quick:
            command += ["--config.batch_size=8", f"--config.checkpoint_every={steps}", "--config.sample_every=0",
                        "--config.log_every=1"]
        run_command(command, "stylegan training")
    return workdir, steps


def stylegan(s: Settings) -> dict[str, np.ndarray]:
    from adain_jax.io.sheets import contact_sheet
    from adain_jax.stylegan import checkpoint, pictures

    workdir, steps = stylegan_run(s)
    g_params, cfg, w_avg = checkpoint.load_generator(workdir, steps)
    cell = 32 if s.quick else 48
    seeds = list(range(8 if s.quick else 48))
    images = pictures.samples(g_params, cfg, seeds, w_avg=w_avg)
    rows = [list(images[i:i + 8]) for i in range(0, len(seeds), 8)]
    what = (f"StyleGAN (adain_jax.stylegan) trained {steps} steps of batch {8 if s.quick else 32} on "
            f"scikit-learn's digits ({cfg.resolution}x{cfg.resolution}) on the CPU with "
            "train/configs/stylegan_digits.py; the EMA generator")
    samples = contact_sheet(rows, cell=cell, header=f"seeds 0-{seeds[-1]}, psi 1")
    mixing = pictures.mixing_grid(g_params, cfg, [0, 1], [10, 11, 12, 13], w_avg=w_avg, cell=cell + 16,
                                  header="style mixing: rows A, columns B")
    sweep = pictures.truncation_sweep(g_params, cfg, list(range(3 if s.quick else 6)), w_avg, cell=cell + 16,
                                      header="truncation sweep (psi)")
    return {"stylegan_samples.png": caption(samples, f"{what}: samples.", random_weights=False),
            "stylegan_mixing.png": caption(mixing, f"{what}: B's coarse, middle or fine styles copied into A.",
                                           random_weights=False),
            "stylegan_truncation.png": caption(sweep, f"{what}: w pulled towards the average w.",
                                               random_weights=False)}


# ----------------------------------------------------------------------------------------- studies


def run_studies(s: Settings) -> pathlib.Path:
    """The workdir of the style-weight study on a random VGG (`train.studies` resumes: no retraining)."""
    workdir = s.workdir / ("studies-quick" if s.quick else "studies")
    command = ["python", "-m", "train.studies", "--study", "style_weight", "--workdir", str(workdir), "--random_vgg",
               f"--config.content={s.train_images / 'content'}", f"--config.style={s.train_images / 'style'}",
               f"--config.num_steps={s.studies_steps}"]
    if s.quick:
        command += ["--config.log_every=1", f"--config.checkpoint_every={s.studies_steps}",
                    "--config.heldout_count=1", "--config.eval_size=64", "--config.grid_pairs=1"]
    run_command(command, "studies")
    return workdir


def studies(s: Settings) -> dict[str, np.ndarray]:
    """The style-weight study's loss curves (python -m train.studies, random VGG)."""
    from PIL import Image

    workdir = run_studies(s)
    curves = np.asarray(Image.open(workdir / "losses.png").convert("RGB"))
    text = (f"RANDOM VGG WEIGHTS (seeded): python -m train.studies --study style_weight --random_vgg, "
            f"{s.studies_steps} steps of batch 4 at 64 px per variant on the CPU. The curves compare the "
            "variants on one random network; they say nothing about the official model.")
    return {"studies_losses.png": caption(curves, text, random_weights=True)}


# ------------------------------------------------------------------------------------------ training


def training(s: Settings) -> dict[str, np.ndarray]:
    """The packaged model's training run (``--run WORKDIR``): its logged losses and three of its held-out
    sample grids (the first, the middle and the last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from train import metric_writer

    if s.run is None:
        raise RuntimeError("the training picture needs --run WORKDIR (the packaged model's training workdir)")
    records = metric_writer.read_metrics(s.run)
    grids = sorted((s.run / "samples").glob("step_*.jpg"))
    if not records or not grids:
        raise RuntimeError(f"{s.run}: needs metrics.jsonl and samples/step_*.jpg (a training workdir)")
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(steps, [r["loss"] for r in records], label="loss")
    ax.plot(steps, [10 * r["style_loss"] for r in records], label="10 x style loss")
    ax.plot(steps, [r["content_loss"] for r in records], label="content loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    curves = plot_pixels(fig)
    chosen = [grids[0], grids[len(grids) // 2], grids[-1]] if len(grids) >= 3 else grids
    height = curves.shape[0]
    cells = [curves]
    for path in chosen:
        grid = Image.open(path).convert("RGB")
        cells.append(np.asarray(grid.resize((round(grid.width * height / grid.height), height), Image.LANCZOS)))
    strip = np.concatenate(cells, axis=1)
    text = (f"The packaged model's training run ({s.run.name}): logged mean losses per {steps[1] - steps[0] if len(steps) > 1 else 1} "
            f"steps (log scale), and its sample grids at {', '.join(p.stem.split('_')[1].lstrip('0') for p in chosen)} steps: "
            "held-out styles (top row) on held-out photos (left column), python -m train.main with "
            "train/configs/packaged.py on a 2-core CPU.")
    return {"packaged_training.png": caption(strip, text, random_weights=False)}


# ------------------------------------------------------------------------------------------ webapp


def launch_server(arguments: list[str], cwd: pathlib.Path, env: dict[str, str],
                  timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """``adain-jax serve ARGUMENTS`` in a subprocess, returned once it prints its address: (process,
    origin). RuntimeError, with the server's stderr, when it does not within ``timeout`` seconds."""
    process = subprocess.Popen([sys.executable, "-m", "adain_jax.cli", "serve", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            if line.startswith("adain-jax serve: http://"):
                return process, line.split()[2].rstrip("/")
    process.kill()
    raise RuntimeError(f"adain-jax serve did not start: {process.stderr.read()}")


def start_server(s: Settings) -> tuple[subprocess.Popen, str]:
    """`adain-jax serve` on a free loopback port with the default weights (no --weights, run from the
    repository root, as `default_model` resolves them); (process, origin)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # --warm none: the start-up sizes would compile beside the page's first request (which compiles its own).
    return launch_server(["--host", "127.0.0.1", "--port", "0", "--images", str(s.images), "--warm", "none"], ROOT, env)


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()


def webapp(s: Settings) -> dict[str, np.ndarray]:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    content_path, style_path = example_pair(s.images)
    size = "128" if s.quick else "384"
    process, origin = start_server(s)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), headless=True, args=list(CHROMIUM_FLAGS))
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                # Only the local server: the page must not (and here cannot) load anything else.
                context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin + "/")
                              else route.abort())
                page = context.new_page()
                page.goto(origin + "/")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                named = page.inner_text("#weights")
                if named != s.model:
                    raise RuntimeError(f"webapp: the page names the model {named!r}, not {s.model!r}")
                if page.is_visible("#random-banner") != s.is_random:
                    raise RuntimeError("webapp: the page's RANDOM WEIGHTS banner is "
                                       f"{'hidden' if s.is_random else 'shown'} for {s.model}")
                page.set_input_files("#content-file", str(content_path))
                page.set_input_files("#style-files", str(style_path))
                page.fill("#content-size", size)
                page.fill("#style-size", size)
                page.click("#stylize")
                page.wait_for_selector("#result[data-done]", timeout=STYLIZE_TIMEOUT * 1000)
                # Again: the first request compiles; the picture shows the steady-state time.
                first = page.get_attribute("#result", "data-done")
                page.click("#stylize")
                deadline = time.monotonic() + STYLIZE_TIMEOUT
                # Polled from here: the page's CSP forbids the eval behind wait_for_function(string).
                while page.get_attribute("#result", "data-done") == first and time.monotonic() < deadline:
                    page.wait_for_timeout(250)
                status = page.inner_text("#status")
                if not status.startswith("done"):
                    raise RuntimeError(f"webapp: the page says {status!r}")
                shot = page.screenshot(full_page=True)
            finally:
                browser.close()
    finally:
        stop_server(process)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    text = (f"adain-jax serve (no --weights) in headless Chromium, {content_path.name} stylized with "
            f"{style_path.name}. Model: {s.model}.")
    return {"webapp.png": caption(pixels, text, random_weights=s.is_random)}


def chromium() -> str:
    return os.environ.get("ADAIN_JAX_CHROMIUM") or CHROMIUM


# -------------------------------------------------------------------------------------------- main


def demo(s: Settings) -> dict[str, np.ndarray]:
    """``adain-jax demo`` as a user runs it (no --weights), its contact sheet 640 px wide."""
    from PIL import Image

    out = s.workdir / "demo"
    run_command(["python", "-m", "adain_jax.cli", "demo", "--images", str(s.images), "--output", str(out),
                 "--size", "64" if s.quick else "256"], "demo")
    with Image.open(out / "contact_sheet.jpg") as sheet:
        width = 320 if s.quick else 640
        small = sheet.convert("RGB").resize((width, round(sheet.height * width / sheet.width)), Image.LANCZOS)
    text = f"make demo's contact sheet (adain-jax demo, no --weights). Model: {s.model}."
    return {"demo.png": caption(np.asarray(small), text, random_weights=s.is_random)}


@dataclasses.dataclass(frozen=True)
class Figure:
    make: Callable[[Settings], dict[str, np.ndarray]]
    needs_images: bool
    extras: tuple[str, ...]  # the optional extras it needs (adain_jax.extras)
    colours: int | None = None  # palette size for the PNG (photographs on a page: smaller files)
    uses_model: bool = False  # stylizes with the default model (`default_model`)


FIGURES = {
    "demo": Figure(demo, True, (), colours=256, uses_model=True),
    "stylegan": Figure(stylegan, False, ("train",)),
    "studies": Figure(studies, True, ("train",)),
    "seams": Figure(seams, True, (), colours=256, uses_model=True),
    "flicker": Figure(flicker_figure, True, ("train", "video"), uses_model=True),  # train: matplotlib
    "webapp": Figure(webapp, True, ("test", "serve"), colours=256, uses_model=True),
    "heldout": Figure(heldout, False, (), colours=256, uses_model=True),
    "augment": Figure(augment, False, (), colours=256, uses_model=True),
    "training": Figure(training, False, ("train",), colours=256),  # only when asked for, with --run
}


def names(text: str) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in FIGURES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown figure {', '.join(unknown) or repr(text)}; "
                                         f"choose from {','.join(FIGURES)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m docs.figures", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="figures: " + ", ".join(FIGURES))
    p.add_argument("--only", type=names, default=[n for n in FIGURES if n != "training"], metavar="NAME,...",
                   help=f"make only these figures (default: all of {','.join(FIGURES)} but training, which "
                        "needs --run)")
    p.add_argument("--run", type=pathlib.Path, default=None, metavar="WORKDIR",
                   help="the training picture's run: a training workdir (metrics.jsonl, samples/)")
    p.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT, metavar="DIR",
                   help="where the pictures go (default: docs/images)")
    p.add_argument("--images", type=pathlib.Path, default=examples.directory(), metavar="DIR",
                   help="the example images shown: a folder with content/ and style/ (default: "
                        "$ADAIN_JAX_EXAMPLES, else the images packaged with adain-jax)")
    p.add_argument("--train-images", type=pathlib.Path, default=None, metavar="DIR",
                   help="what the studies run trains on: a folder with content/ and style/ (default: --images)")
    p.add_argument("--heldout", type=pathlib.Path, default=None, metavar="DIR",
                   help="the heldout picture's images: a folder with content/ and style/ that training never "
                        "read, e.g. the data recipe's held-out split (default: the images packaged with adain-jax)")
    p.add_argument("--workdir", type=pathlib.Path, default=DEFAULT_WORKDIR, metavar="DIR",
                   help="training runs kept between runs, so a rerun does not retrain (default: /tmp/adain-figures)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and steps (for the test): not for the docs")
    p.add_argument("--stylegan-steps", type=int, default=None, metavar="N",
                   help="StyleGAN training steps (default: 2000; --quick: 4)")
    p.add_argument("--studies-steps", type=int, default=None, metavar="N",
                   help="training steps per study variant (default: 200; --quick: 2)")
    return p


def problems(args) -> list[str]:
    """What is missing for the chosen figures, one line each (checked before any work)."""
    out = []
    folders = []
    if any(FIGURES[n].needs_images for n in args.only):
        folders.append(("--images", args.images))
    if "studies" in args.only:
        folders.append(("--train-images", args.train_images or args.images))
    if ("heldout" in args.only or "augment" in args.only) and args.heldout is not None:
        folders.append(("--heldout", args.heldout))
    for flag, folder in dict.fromkeys(folders):
        out += [f"{folder / d}: missing ({flag} needs content/ and style/ subfolders)"
                for d in ("content", "style") if not (folder / d).is_dir()]
    for name in args.only:
        for extra in FIGURES[name].extras:
            absent = extras.missing(extra)
            if absent:
                out.append(extras.message(extra, f"the {name} figure", absent))
    if "training" in args.only and (args.run is None or not (args.run / "metrics.jsonl").is_file()):
        out.append(f"training: --run must name a training workdir with metrics.jsonl (got {args.run})")
    if "webapp" in args.only and not os.access(chromium(), os.X_OK):
        out.append(f"webapp: no Chromium at {chromium()} (Debian: apt-get install chromium; or set ADAIN_JAX_CHROMIUM)")
    if any(FIGURES[n].uses_model for n in args.only):
        from adain_jax.io import weights as weights_lib

        try:
            weights_lib.describe(default_model())
        except (FileNotFoundError, ValueError, OSError) as e:
            out.append(f"no usable default weights for the stylizing pictures: {e}")
    for flag in ("stylegan_steps", "studies_steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            out.append(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    found = problems(args)
    if found:
        for line in found:
            print(f"error: {line}", file=sys.stderr)
        return 2
    from adain_jax.io import weights as weights_lib

    weights, model, is_random = default_model(), "", False
    if any(FIGURES[n].uses_model for n in args.only):
        described = weights_lib.describe(weights)
        model, is_random = described["model"], described["kind"] == "random"
        print(f"model: {model}", flush=True)
    settings = Settings(output=args.output, workdir=args.workdir, images=args.images,
                        train_images=args.train_images or args.images, heldout=args.heldout, run=args.run,
                        quick=args.quick,
                        stylegan_steps=args.stylegan_steps or (4 if args.quick else 2000),
                        studies_steps=args.studies_steps or (2 if args.quick else 200), weights=weights,
                        model=model, is_random=is_random)
    total = 0
    for name in args.only:
        start = time.perf_counter()
        try:
            pictures = FIGURES[name].make(settings)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - start
        for filename, pixels in pictures.items():
            size = save_png(settings.output / filename, pixels, FIGURES[name].colours)
            total += size
            print(f"wrote {settings.output / filename} ({pixels.shape[1]}x{pixels.shape[0]}, {size} bytes)")
        print(f"{name}: {seconds:.1f} s", flush=True)
    print(f"{len(args.only)} figure(s), {total} bytes in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
