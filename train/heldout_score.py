"""The held-out score of a decoder: its training objective on content x style pairs training never read.

    python -m train.heldout_score --weights adain_jax/pretrained --heldout data/open/heldout
    python -m train.heldout_score --weights workdir/packaged --all-checkpoints --heldout data/open/heldout \
        --json scores.json

``--heldout DIR`` holds ``content/`` and ``style/`` (the data recipe's held-out split, `train.debian_data`).
``--contents N --styles M`` images are taken from each, spread evenly over the sorted file names (so
every source package is represented), centre-cropped to ``--size``, and all N x M pairs stylized.
The scores, means over the pairs (`train.studies.heldout.evaluate`): ``content_loss`` and ``style_loss``,
the paper's losses on the decoder's unclipped output (what training minimises, on images it never saw),
and the quality metrics of the clipped picture (``q_*``, `adain_jax.quality.metrics`). The losses are
measured with the model's own encoder: they compare checkpoints of one run, or runs on the same VGG,
not models on different VGGs. With a training workdir and ``--all-checkpoints`` every checkpoint is
scored: the table the packaged model's checkpoint is chosen from, beside its sample grids.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from adain_jax.io import weights as weights_lib

PAIR_CHUNK = 8  # pairs stylized at once: bounds the memory of the VGG activations at 256 px


def spread(paths: list, count: int) -> list:
    """``count`` of ``paths`` at evenly spaced positions (all of them if there are fewer)."""
    if count >= len(paths):
        return list(paths)
    return [paths[(i * len(paths)) // count] for i in range(count)]


def load_heldout(directory, contents: int, styles: int, size: int):
    """(contents, styles, names) of the held-out folder; raises FileNotFoundError/ImageError for a bad folder."""
    from adain_jax.io import images as image_io
    from train.studies import heldout

    directory = pathlib.Path(directory)
    content_paths = spread(image_io.list_images(directory / "content"), contents)
    style_paths = spread(image_io.list_images(directory / "style"), styles)
    return heldout.load_pairs(content_paths, style_paths, size)


def score(weights, content: np.ndarray, style: np.ndarray) -> dict[str, float]:
    """Mean scores over the pairs ``content[i], style[i]``, in chunks of `PAIR_CHUNK`."""
    from train.studies import heldout

    sums: dict[str, float] = {}
    for start in range(0, len(content), PAIR_CHUNK):
        chunk = slice(start, start + PAIR_CHUNK)
        scores = heldout.evaluate(weights, content[chunk], style[chunk])[1.0]["scores"]
        n = len(content[chunk])
        for key, value in scores.items():
            sums[key] = sums.get(key, 0.0) + value * n
    return {key: total / len(content) for key, total in sums.items()}


def sources(weights_arg, all_checkpoints: bool) -> list[tuple[str, pathlib.Path | str]]:
    """(label, directory) of every model to score."""
    steps = weights_lib.checkpoint_steps(weights_arg) if all_checkpoints else []
    if all_checkpoints and not steps:
        raise FileNotFoundError(f"{weights_arg}: --all-checkpoints needs a training workdir with checkpoints")
    if steps:
        return [(f"step {s}", weights_lib.checkpoint_dir(weights_arg, s)) for s in steps]
    return [(str(weights_arg), weights_arg)]


def markdown(rows: list[tuple[str, dict]]) -> str:
    keys = list(rows[0][1])
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {label} | " + " | ".join(f"{scores[k]:.4g}" for k in keys) + " |" for label, scores in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.heldout_score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True,
                        help="a weights directory, a training workdir (its latest checkpoint), or 'random'")
    parser.add_argument("--heldout", type=pathlib.Path, required=True, help="folder with content/ and style/")
    parser.add_argument("--all-checkpoints", action="store_true", help="score every checkpoint of a workdir")
    parser.add_argument("--contents", type=int, default=8, help="content images (default 8)")
    parser.add_argument("--styles", type=int, default=8, help="style images (default 8)")
    parser.add_argument("--size", type=int, default=256, help="square centre crops of this size (default 256)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the scores here")
    args = parser.parse_args(argv)
    from adain_jax.io import images as image_io

    try:
        content, style, names = load_heldout(args.heldout, args.contents, args.styles, args.size)
        models = sources(args.weights, args.all_checkpoints)
        rows = []
        for label, directory in models:
            rows.append((label, score(weights_lib.load_weights(directory), content, style)))
            print(f"scored {label}", file=sys.stderr, flush=True)
    except (FileNotFoundError, ValueError, image_io.FileError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"{len(names)} held-out pairs ({args.contents} contents x {args.styles} styles from {args.heldout}) "
          f"at {args.size}x{args.size}:\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"pairs": names, "size": args.size, "scores": dict(rows)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
