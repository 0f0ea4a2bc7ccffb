"""The documentation's pictures (docs/images/), made from what really runs on a CPU.

    python -m docs.figures --images DIR                        # every picture, into docs/images/
    python -m docs.figures --images DIR --only seams,flicker   # a subset
    python -m docs.figures --images DIR --quick --output /tmp/figures   # tiny sizes and steps (the test)

Pictures (``--only`` names):

* ``demo``: ``demo.png``, the contact sheet of ``adain-jax demo`` (the README's picture), scaled down.
* ``webapp``: ``webapp.png``, `adain-jax serve` on 127.0.0.1 (random weights) in headless Chromium
  through Playwright, with a content and a style filled in and the result shown.
* ``stylegan``: ``stylegan_samples.png``, ``stylegan_mixing.png``, ``stylegan_truncation.png``, from a
  real training run on scikit-learn's digits (train/configs/stylegan_digits.py), drawn by
  `adain_jax.stylegan.pictures`. The run lives in WORKDIR/stylegan, so a rerun does not retrain.
* ``studies``: ``studies_losses.png``, the loss curves of ``python -m train.studies --study style_weight
  --random_vgg`` (WORKDIR/studies, resumed likewise).
* ``seams``: ``tiling_seams.png``, `adain_jax.stylize_tiled` against `adain_jax.stylize` on one image,
  the difference amplified and its maximum written on it (and printed).
* ``flicker``: ``flicker.png``, the per-frame warping error (`adain_jax.video.flicker`) of per-frame
  stylization, ``--smooth`` and ``--blend`` on a clip generated from one content image.

Random weights decode everything to a near-uniform grey, so ``seams`` and ``flicker`` use the decoder
that the studies run trained on its random VGG (`stylizing_weights`; with ``--quick``, plain random
weights). On the shared 2-core CPU a full run took about 15 minutes from nothing (most of it the
studies' three 200-step trainings), and about 4 minutes once the training runs exist.

Every picture gets a caption band at its bottom saying what made it; a picture made with random
weights says so there on an amber band (`RANDOM_BAND`). ``--images DIR`` is the example set the
pictures show (a folder with ``content/`` and ``style/``; default `adain_jax.examples.directory`:
``$ADAIN_JAX_EXAMPLES``, else the packaged public-domain/CC0 images, so that committed pictures show
only those); the pair shown is `adain_jax.cli.demo.choose_examples`' first. ``--train-images DIR``
(default: ``--images``) is what the studies run trains on: four images a side leave it one training
image after holding three out, so the docs' run takes a larger set. A missing prerequisite is one
``error:`` line and exit status 2 before any work starts.
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
SEAM_AMPLIFICATION = 1e4       # |tiled - untiled| x 1e4: a difference of 1e-4 shows as white
RANDOM_NOTE = "RANDOM WEIGHTS (seeded; the official weights cannot be had here)"


@dataclasses.dataclass(frozen=True)
class Settings:
    output: pathlib.Path
    workdir: pathlib.Path
    images: pathlib.Path
    train_images: pathlib.Path
    quick: bool
    stylegan_steps: int
    studies_steps: int


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


def random_weights():
    import jax

    import adain_jax

    return adain_jax.init_weights(jax.random.key(0))


def stylizing_weights(s: Settings) -> tuple[object, str]:
    """(weights, what they are) for the seams and flicker pictures.

    Random weights decode every image to a near-uniform grey, which shows neither seams nor flicker;
    so, except with --quick, these pictures use the decoder the studies run trained (style weight 1,
    `studies`' workdir, resumed or trained here) on its random VGG: still random weights, but one
    whose output has the content's structure.
    """
    import adain_jax
    from adain_jax.io import weights as weights_lib

    if s.quick:
        return random_weights(), RANDOM_NOTE
    decoder = s.workdir / "studies" / STUDY_DECODER
    if s.studies_steps not in (weights_lib.checkpoint_steps(decoder) if decoder.is_dir() else []):
        run_studies(s)  # trains it (and the study's other variants); otherwise not even rescored
    what = (f"RANDOM VGG ENCODER (seeded) with a decoder trained {s.studies_steps} steps on it on the CPU "
            f"(python -m train.studies --study style_weight --random_vgg, variant {STUDY_DECODER}); "
            "not the official weights")
    return adain_jax.load_weights(decoder), what


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
    weights, what = stylizing_weights(s)
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
    text = (f"{what}. Tiled minus untiled on one {content.shape[1]}x{content.shape[0]} image: "
            f"max abs diff {worst:.2e} (the bound is 1e-4); any seam would show as bright lines.")
    return {"tiling_seams.png": caption(sheet, text, random_weights=True)}


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
    weights, what = stylizing_weights(s)
    curves = flicker_curves(weights, clip(content, frames, height, width), style, 0.9, 0.6)
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
    text = (f"{what}. The curves show the measure and the options at work, not the official model's numbers.")
    return {"flicker.png": caption(plot_pixels(fig), text, random_weights=True)}


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


STUDY_DECODER = "sw1"  # the style-weight study's variant whose decoder the seams and flicker pictures use


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
    """`adain-jax serve` on a free loopback port with random weights; (process, origin)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return launch_server(["--host", "127.0.0.1", "--port", "0", "--weights", str(s.workdir / "no-weights"),
                          "--images", str(s.images)], ROOT, env)


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
                page.set_input_files("#content-file", str(content_path))
                page.set_input_files("#style-files", str(style_path))
                page.fill("#content-size", size)
                page.fill("#style-size", size)
                page.click("#stylize")
                page.wait_for_selector("#result[data-done]", timeout=300_000)
                # Again: the first request compiles; the picture shows the steady-state time.
                first = page.get_attribute("#result", "data-done")
                page.click("#stylize")
                deadline = time.monotonic() + 300
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
    text = (f"{RANDOM_NOTE}: adain-jax serve in headless Chromium; the result shows the pipeline, "
            "not style transfer (the page says so in its own banner).")
    return {"webapp.png": caption(pixels, text, random_weights=True)}


def chromium() -> str:
    return os.environ.get("ADAIN_JAX_CHROMIUM") or CHROMIUM


# -------------------------------------------------------------------------------------------- main


def demo(s: Settings) -> dict[str, np.ndarray]:
    """``adain-jax demo`` as a user runs it (random weights here), its contact sheet 640 px wide."""
    from PIL import Image

    out = s.workdir / "demo"
    run_command(["python", "-m", "adain_jax.cli", "demo", "--images", str(s.images), "--weights",
                 str(out / "no-weights"), "--output", str(out), "--size", "64" if s.quick else "256"], "demo")
    with Image.open(out / "contact_sheet.jpg") as sheet:
        width = 320 if s.quick else 640
        small = sheet.convert("RGB").resize((width, round(sheet.height * width / sheet.width)), Image.LANCZOS)
    return {"demo.png": caption(np.asarray(small), f"{RANDOM_NOTE}: make demo's contact sheet; with the official "
                                                   "weights the results are stylizations", random_weights=True)}


@dataclasses.dataclass(frozen=True)
class Figure:
    make: Callable[[Settings], dict[str, np.ndarray]]
    needs_images: bool
    extras: tuple[str, ...]  # the optional extras it needs (adain_jax.extras)
    colours: int | None = None  # palette size for the PNG (photographs on a page: smaller files)


FIGURES = {
    "demo": Figure(demo, True, (), colours=256),
    "stylegan": Figure(stylegan, False, ("train",)),
    "studies": Figure(studies, True, ("train",)),
    "seams": Figure(seams, True, ("train",), colours=256),  # without --quick: the studies' decoder (stylizing_weights)
    "flicker": Figure(flicker_figure, True, ("train", "video")),
    "webapp": Figure(webapp, True, ("test", "serve"), colours=256),
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
    p.add_argument("--only", type=names, default=list(FIGURES), metavar="NAME,...",
                   help=f"make only these figures (default: all of {','.join(FIGURES)})")
    p.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT, metavar="DIR",
                   help="where the pictures go (default: docs/images)")
    p.add_argument("--images", type=pathlib.Path, default=examples.directory(), metavar="DIR",
                   help="the example images shown: a folder with content/ and style/ (default: "
                        "$ADAIN_JAX_EXAMPLES, else the images packaged with adain-jax)")
    p.add_argument("--train-images", type=pathlib.Path, default=None, metavar="DIR",
                   help="what the studies run trains on: a folder with content/ and style/ (default: --images)")
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
    if "studies" in args.only or ({"seams", "flicker"} & set(args.only) and not args.quick):
        folders.append(("--train-images", args.train_images or args.images))
    for flag, folder in dict.fromkeys(folders):
        out += [f"{folder / d}: missing ({flag} needs content/ and style/ subfolders)"
                for d in ("content", "style") if not (folder / d).is_dir()]
    for name in args.only:
        for extra in FIGURES[name].extras:
            absent = extras.missing(extra)
            if absent:
                out.append(extras.message(extra, f"the {name} figure", absent))
    if "webapp" in args.only and not os.access(chromium(), os.X_OK):
        out.append(f"webapp: no Chromium at {chromium()} (Debian: apt-get install chromium; or set ADAIN_JAX_CHROMIUM)")
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
    settings = Settings(output=args.output, workdir=args.workdir, images=args.images,
                        train_images=args.train_images or args.images, quick=args.quick,
                        stylegan_steps=args.stylegan_steps or (4 if args.quick else 2000),
                        studies_steps=args.studies_steps or (2 if args.quick else 200))
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
