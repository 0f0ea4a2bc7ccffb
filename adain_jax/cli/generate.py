"""``adain-jax generate``: images from a trained StyleGAN generator (the EMA weights of a training workdir).

    adain-jax generate --workdir runs/sg --seeds 0-15 --output out/
    adain-jax generate --workdir runs/sg --seeds 0-7 --truncation 0.7 --cutoff 4 --output out/
    adain-jax generate --workdir runs/sg --seeds 0-3 --mixing-grid 0-3:10-14 --truncation-sweep \\
        --noise-study --output out/

Writes ``seed<NNNN>.png`` per seed and ``samples.png`` (all seeds on one sheet); with the options, the
pictures of `adain_jax.stylegan.pictures`. Same seeds give the same images on every run.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

from adain_jax.cli import options

HELP = "sample a trained StyleGAN generator: seeds, truncation, style-mixing grid, noise study"
DESCRIPTION = ("Generate images with the exponential-moving-average generator of the latest checkpoint of a "
               "StyleGAN training workdir (python -m train.main --config train/configs/stylegan_*.py). Seed s "
               "gives the latent RandomState(s).randn(latent_dim) and its own noise, so a seed gives the same "
               "image in any batch and on any run. --truncation pulls the first --cutoff style layers towards "
               "the tracked average w (psi 1: none, 0: the average image).")
EPILOG = """pictures (written to --output besides seed<NNNN>.png and samples.png; sheets show the first 64 seeds):
  --mixing-grid ROWS:COLS  style_mixing.png: rows (source A) x columns (source B), B's coarse, middle or
                           fine styles copied into A, as Figure 3 of Karras et al. 2019
  --truncation-sweep       truncation.png: the --seeds at psi 1, 0.7, 0.5, 0, -0.5, -1 (Figure 8)
  --noise-study            noise.png: same w, several noise draws, and the per-pixel standard deviation

seed lists: "0-15" (inclusive range), "1,5,9", or both: "0-3,10,20-22".
exit status: 0 done, 1 an image could not be written, 2 bad arguments or workdir.
"""

MAX_SEED = 2 ** 32 - 1  # numpy's RandomState seed range
MAX_SEEDS = 100_000
SHEET_SEEDS = 64  # samples.png, truncation.png and noise.png show at most the first 64 seeds


def seed_list(text: str) -> list[int]:
    """"0-15", "1,5,9", "0-3,7" -> seeds in order (ranges inclusive), each in [0, 2^32)."""
    seeds: list[int] = []
    for part in text.split(","):
        found = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not found:
            raise argparse.ArgumentTypeError(f"expected seeds like 0-15 or 1,5,9, got {text!r}")
        lo = int(found.group(1))
        hi = lo if found.group(2) is None else int(found.group(2))
        if hi < lo:
            raise argparse.ArgumentTypeError(f"empty seed range {part.strip()!r} (the end is before the start)")
        if hi > MAX_SEED:
            raise argparse.ArgumentTypeError(f"seeds must be in [0, {MAX_SEED}], got {hi}")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"more than {MAX_SEEDS} seeds in {text!r}")
        seeds.extend(range(lo, hi + 1))
    return seeds


def seed_grid(text: str) -> tuple[list[int], list[int]]:
    rows, sep, cols = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected ROWS:COLS seed lists, e.g. 0-3:10-14, got {text!r}")
    return seed_list(rows), seed_list(cols)


def psi(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not -10.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"truncation psi must be in [-10, 10], got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, type=pathlib.Path, metavar="DIR",
                        help="StyleGAN training workdir (its latest checkpoint is used)")
    parser.add_argument("--step", type=options.non_negative, default=None, metavar="N",
                        help="use checkpoint N instead of the latest")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("0-15"), metavar="LIST",
                        help='seeds, e.g. "0-15" or "1,5,9" (default: 0-15)')
    parser.add_argument("--truncation", type=psi, default=1.0, metavar="PSI",
                        help="truncation psi: w_avg + psi * (w - w_avg) (default: 1, none)")
    parser.add_argument("--cutoff", type=options.non_negative, default=None, metavar="N",
                        help="truncate only the first N style layers (default: all; coarse layers come first)")
    parser.add_argument("--output", required=True, type=pathlib.Path, metavar="DIR", help="output directory")
    parser.add_argument("--mixing-grid", type=seed_grid, default=None, metavar="ROWS:COLS",
                        help="also write style_mixing.png with these row and column seeds, e.g. 0-3:10-14")
    parser.add_argument("--truncation-sweep", action="store_true",
                        help="also write truncation.png: the seeds at psi 1, 0.7, 0.5, 0, -0.5, -1")
    parser.add_argument("--noise-study", action="store_true",
                        help="also write noise.png: per seed, several noise draws and the per-pixel std")
    parser.add_argument("--noise-draws", type=options.non_negative, default=4, metavar="K",
                        help="noise draws shown per seed in noise.png (default: 4)")
    parser.add_argument("--cell", type=options.non_negative, default=128, metavar="PX",
                        help="cell size of the sheets in pixels (default: 128)")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    from adain_jax.io import images as image_io
    from adain_jax.stylegan import checkpoint, pictures
    from adain_jax.stylegan.config import num_style_layers

    if args.cell < 8:
        return _fail(f"--cell must be at least 8 pixels, got {args.cell}")
    if args.noise_draws < 1:
        return _fail("--noise-draws must be at least 1")
    if args.mixing_grid and len(args.mixing_grid[0]) * len(args.mixing_grid[1]) > 64 * 64:
        return _fail("--mixing-grid: at most 4096 row x column pairs")
    try:
        g_params, cfg, w_avg = checkpoint.load_generator(args.workdir, args.step)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    count = num_style_layers(cfg)
    cutoff = count if args.cutoff is None else args.cutoff
    if cutoff > count:
        return _fail(f"--cutoff {cutoff}: this generator has {count} style layers")
    if args.output.exists() and not args.output.is_dir():
        return _fail(f"{args.output}: --output exists and is not a directory")
    steps = checkpoint.generator_steps(args.workdir)
    step = steps[-1] if args.step is None else args.step
    where = f"{args.workdir} step {step}"
    trunc = f", psi {args.truncation:g}, cutoff {cutoff}/{count}" if args.truncation != 1.0 else ""

    import numpy as np
    from tqdm import tqdm

    try:
        jobs = ["samples"] + (["mixing"] if args.mixing_grid else []) + \
            (["truncation"] if args.truncation_sweep else []) + (["noise"] if args.noise_study else [])
        with tqdm(total=len(args.seeds) + len(jobs) - 1, desc="generate", unit="image", disable=None,
                  file=sys.stderr) as bar:
            images: list[np.ndarray] = []
            for start in range(0, len(args.seeds), pictures.BATCH):
                seeds = args.seeds[start:start + pictures.BATCH]
                batch = pictures.samples(g_params, cfg, seeds, w_avg=w_avg, psi=args.truncation, cutoff=cutoff)
                for seed, image in zip(seeds, batch, strict=True):
                    image_io.save_image(args.output / f"seed{seed:04d}.png", image)
                    if len(images) < SHEET_SEEDS:  # only the sheet's images stay in memory
                        images.append(image)
                    bar.update(1)
            columns = max(1, min(8, len(images)))
            rows = [images[i:i + columns] for i in range(0, len(images), columns)]
            sheet = _samples_sheet(rows, args.seeds, columns, args.cell, f"{where}{trunc}")
            image_io.save_image(args.output / "samples.png", sheet)
            kwargs = {"w_avg": w_avg, "psi": args.truncation, "cutoff": cutoff, "cell": args.cell}
            if args.mixing_grid:
                row_seeds, col_seeds = args.mixing_grid
                image_io.save_image(args.output / "style_mixing.png", pictures.mixing_grid(
                    g_params, cfg, row_seeds, col_seeds, header=f"style mixing, {where}{trunc}", **kwargs))
                bar.update(1)
            if args.truncation_sweep:
                image_io.save_image(args.output / "truncation.png", pictures.truncation_sweep(
                    g_params, cfg, args.seeds[:SHEET_SEEDS], w_avg, cutoff=cutoff, cell=args.cell,
                    header=f"truncation (cutoff {cutoff}/{count}), {where}"))
                bar.update(1)
            if args.noise_study:
                image_io.save_image(args.output / "noise.png", pictures.noise_study(
                    g_params, cfg, args.seeds[:SHEET_SEEDS], draws=args.noise_draws, header=where, **kwargs))
                bar.update(1)
    except image_io.ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(args.seeds)} images and {len(jobs)} sheet(s) to {args.output}")
    return 0


def _samples_sheet(rows, seeds, columns, cell, header):
    """samples.png: the seeds in rows of ``columns``."""
    from adain_jax.io.sheets import contact_sheet

    labels = None if len(rows) > 1 else [f"seed {s}" for s in seeds[:columns]]
    row_labels = [f"seeds {', '.join(str(s) for s in seeds[i * columns:(i + 1) * columns])}"
                  for i in range(len(rows))]
    return contact_sheet(rows, labels=labels, cell=cell, header=header, row_labels=row_labels)
