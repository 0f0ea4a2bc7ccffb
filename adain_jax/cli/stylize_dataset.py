"""``adain-jax stylize-dataset``: one stylized image per content image of a folder tree (Stylized-ImageNet).

    adain-jax stylize-dataset --content imagenet/train --style paintings/ --output stylized/train --seed 0

The output mirrors the content tree (class folders stay). Each image's style is drawn from the style
folder by a seeded hash of its relative path, so every run, on any number of processes, picks the
same one. Resumable: an output that exists is skipped, and every write is atomic. Processes split
the sorted file list (file i belongs to process i mod count): give ``--process-id``/``--num-processes``
explicitly to simulate or script the split, or ``--distributed`` to start ``jax.distributed``
through `adain_jax.distributed` (as training does) and take them from it. Unreadable files are
counted, listed at the end and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys

import numpy as np

from adain_jax.cli import options

HELP = "stylize a folder tree, one random style per image (resumable, multi-host)"
DESCRIPTION = ("Write one stylized image per content image under --content to the same relative path under "
               "--output, with a style drawn from --style by a seeded function of the relative path.")
EPILOG = """examples:
  adain-jax stylize-dataset --content imagenet/train --style paintings/ --output stylized/train
  adain-jax stylize-dataset ... --process-id 0 --num-processes 4   # this machine's quarter of the files
  adain-jax stylize-dataset ... --distributed                      # every host; ids from jax.distributed

exit status: 0 all written, 1 some inputs were unreadable (listed; the rest were written),
2 bad arguments or weights.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", required=True, type=pathlib.Path, metavar="ROOT",
                        help="root of the content images (searched recursively)")
    parser.add_argument("--style", required=True, type=pathlib.Path, metavar="DIR", help="folder of style images")
    parser.add_argument("--output", required=True, type=pathlib.Path, metavar="ROOT2",
                        help="output root; the content tree is mirrored under it")
    options.add_weights_argument(parser)
    parser.add_argument("--alpha", type=options.alpha, default=1.0, metavar="A",
                        help="degree of stylization in [0, 1] (default: 1)")
    options.add_size_arguments(parser)
    options.add_precision_argument(parser)
    parser.add_argument("--ext", default="jpg", help="output image format/extension (default: jpg)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the style choice (default: 0)")
    parser.add_argument("--tile", type=options.tile, default="auto", metavar="N|auto",
                        help="tile size in pixels as in `stylize` (default auto: only images that would not fit)")
    parser.add_argument("--process-id", type=options.non_negative, default=None, metavar="I",
                        help="this process's index among --num-processes (default 0, or from --distributed)")
    parser.add_argument("--num-processes", type=options.non_negative, default=None, metavar="P",
                        help="how many processes share the files (default 1, or from --distributed)")
    parser.add_argument("--distributed", action="store_true",
                        help="start jax.distributed (adain_jax.distributed: coordinator, count and id from "
                             "--coordinator-address/--num-processes/--process-id, else JAX_COORDINATOR_ADDRESS / "
                             "JAX_NUM_PROCESSES / JAX_PROCESS_ID, else the cluster) and take this process's share")
    parser.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                        help="with --distributed: process 0's address and a free port on it")


_DISTRIBUTED_NAMES = {"coordinator_address": "--coordinator-address", "num_processes": "--num-processes",
                      "process_id": "--process-id"}


def dataset_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Every image under ``root`` (recursive, hidden files and folders skipped), as sorted relative paths."""
    from adain_jax.io import images as image_io

    if not root.is_dir():
        raise image_io.ImageError(root, "no such directory" if not root.exists() else "not a directory")
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and pathlib.Path(name).suffix.lower() in image_io.IMAGE_EXTENSIONS:
                found.append((pathlib.Path(folder) / name).relative_to(root))
    if not found:
        raise image_io.ImageError(root, f"no image files under this directory (looked for "
                                        f"{', '.join(image_io.IMAGE_EXTENSIONS)})")
    return sorted(found, key=lambda p: p.as_posix())


def choose_style(relative: pathlib.Path, num_styles: int, seed: int) -> int:
    """The style index for a content file: a seeded hash of its relative path (POSIX form), so the
    choice does not depend on the process, the machine, the file order or Python's hash seed."""
    digest = hashlib.sha256(f"{seed}\0{pathlib.PurePath(relative).as_posix()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_styles


def share(files: list, process_id: int, num_processes: int) -> list:
    """This process's files: every ``num_processes``-th, starting at ``process_id``."""
    return files[process_id::num_processes]


def output_path(output: pathlib.Path, relative: pathlib.Path, ext: str) -> pathlib.Path:
    return output / relative.with_suffix("." + ext)


def _processes(args) -> tuple[int, int]:
    """(this process's id, process count): explicit, or from `adain_jax.distributed` with --distributed."""
    if args.distributed:
        import jax

        from adain_jax import distributed

        try:
            settings = distributed.resolve(args.coordinator_address, args.num_processes, args.process_id,
                                           names=_DISTRIBUTED_NAMES)
            distributed.initialize(settings)
        except distributed.DistributedSetupError as e:
            raise ValueError(str(e)) from None
        return jax.process_index(), jax.process_count()
    if args.coordinator_address is not None:
        raise ValueError("--coordinator-address needs --distributed")
    count = 1 if args.num_processes is None else args.num_processes
    process_id = 0 if args.process_id is None else args.process_id
    if count < 1 or process_id >= count:
        raise ValueError(f"--process-id must be in [0, --num-processes), got {process_id} of {count}")
    return process_id, count


def run(args) -> int:
    """The ``stylize-dataset`` subcommand; returns the exit status."""
    import jax
    from tqdm import tqdm

    from adain_jax import runner
    from adain_jax.io import files as file_io
    from adain_jax.io import images as image_io
    from adain_jax.io import weights as weights_lib

    ext = args.ext.lstrip(".").lower()
    try:
        if f".{ext}" not in image_io.IMAGE_EXTENSIONS:
            raise ValueError(f"--ext {args.ext}: unknown image extension; "
                             f"use one of {', '.join(image_io.IMAGE_EXTENSIONS)}")
        options.check_tile(args.tile)
        process_id, count = _processes(args)
        files = dataset_files(args.content)
        styles = image_io.list_images(args.style)
        outputs: dict[pathlib.Path, pathlib.Path] = {}  # output -> the content file written there
        for rel in files:
            out = output_path(args.output, rel, ext)
            if out in outputs:
                raise ValueError(f"{args.content / outputs[out]} and {args.content / rel} would both be written to "
                                 f"{out}; rename one or choose another --ext")
            outputs[out] = rel
        weights = weights_lib.load_weights(args.weights)
    except (ValueError, FileNotFoundError, image_io.ImageError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    mine = share(files, process_id, count)
    todo = [rel for rel in mine if not output_path(args.output, rel, ext).exists()]
    print(f"process {process_id} of {count}: {len(mine)} of {len(files)} images, "
          f"{len(mine) - len(todo)} already written, {len(todo)} to do", file=sys.stderr)
    stylizer = runner.Stylizer(weights, content_size=args.content_size, style_size=args.style_size,
                               tile=args.tile, keep_style_images=False, precision=options.effective_precision(args))
    unreadable: list[str] = []
    bar = tqdm(total=len(todo), desc="stylizing", unit="image", file=sys.stderr, disable=None, smoothing=0.05)

    def skip(rel, error):
        unreadable.append(str(error))
        tqdm.write(f"skipped: {error}", file=sys.stderr)
        bar.update(1)

    for batch in runner.same_size_batches(todo, lambda rel: stylizer.content(args.content / rel),
                                          len(jax.local_devices()), skip):
        rels = [rel for rel, _ in batch]
        chosen = [(styles[choose_style(rel, len(styles), args.seed)],) for rel in rels]
        try:
            outs = stylizer.run_batch(np.stack([c for _, c in batch]), chosen, alpha=args.alpha)
        except (image_io.ImageError, ValueError, OSError) as e:  # an unreadable style image
            unreadable.extend(f"{args.content / rel} (style {s[0]}): {e}" for rel, s in zip(rels, chosen, strict=True))
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            bar.update(len(batch))
            continue
        for rel, out in zip(rels, outs, strict=True):
            path = output_path(args.output, rel, ext)
            file_io.remove_stale_temporaries(path)  # a killed run's leftovers; the output is this process's alone
            try:
                image_io.save_image(path, out)
            except (image_io.ImageError, OSError) as e:
                unreadable.append(str(e))
                tqdm.write(f"skipped: {e}", file=sys.stderr)
            bar.update(1)
    bar.close()
    written = len(todo) - len(unreadable)
    print(f"wrote {written} image(s) under {args.output}" + (f"; {len(unreadable)} failed:" if unreadable else ""))
    for line in unreadable:
        print(f"  {line}")
    return 1 if unreadable else 0
