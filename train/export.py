"""Copy a training checkpoint's weights into a standalone weights directory.

    python -m train.export --workdir WORKDIR --out weights/trained [--step N] [--average K] [--dtype float16]

The result has the layout `convert/vgg_to_flax.py` writes (``weights.npz`` + ``manifest.json``), so it
can be moved, shared or passed to ``adain-jax stylize --weights`` without the rest of the workdir.
(``adain-jax stylize --weights WORKDIR`` also works directly, using the latest checkpoint.) A decoder
variant (``config.skip``/``skip_source``/``input_norm``) is read from the checkpoint by `load_weights`
and recorded in the manifest by `save_weights`, so the exported directory rebuilds the same network.

``--average K`` writes the mean of the decoder weights of the last K checkpoints up to the step
(checkpoint averaging, as in Polyak averaging or stochastic weight averaging): with a batch of 8 the
weights of successive checkpoints scatter around what the run is learning, and their mean lands nearer
it. Measured on the packaged model's run (docs/real_model.md). The frozen encoder is the step's own.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import numpy as np

from adain_jax.io import weights as weights_lib


def averaged_steps(steps: list[int], step: int, average: int) -> list[int]:
    """The ``average`` checkpoint steps that end at ``step``; ValueError (one line) if there are fewer."""
    if average < 1:
        raise ValueError(f"--average must be at least 1, got {average}")
    chosen = [s for s in steps if s <= step][-average:]
    if len(chosen) < average:
        raise ValueError(f"--average {average} needs {average} checkpoints up to step {step}, the workdir has "
                         f"{len(chosen)} ({', '.join(map(str, chosen))})")
    return chosen


def export(workdir, out, step: int | None = None, *, average: int = 1, dtype=np.float32,
           extra: dict | None = None) -> pathlib.Path:
    """Write the weights of checkpoint ``step`` (default: the latest) of ``workdir`` to ``out``, stored as
    ``dtype``, with ``extra`` added to the manifest; with ``average`` > 1 the decoder is the mean of the
    last ``average`` checkpoints' decoders up to ``step`` (`averaged_steps`; module docstring)."""
    import adain_jax
    from train import checkpointing

    workdir = pathlib.Path(workdir)
    steps = weights_lib.checkpoint_steps(workdir)
    if step is None and not steps:
        raise FileNotFoundError(f"{workdir}: no training checkpoints (looked for "
                                f"{workdir / weights_lib.CHECKPOINTS}/<step>/{weights_lib.WEIGHTS_ITEM})")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{weights_lib.checkpoint_dir(workdir, step)}: no such checkpoint "
                                f"(steps: {', '.join(map(str, steps)) or 'none'})")
    chosen = averaged_steps(steps, step, average)
    weights = adain_jax.load_weights(weights_lib.checkpoint_dir(workdir, step))
    manifest = {"source": "adain-jax training", "workdir": str(workdir.absolute()), "step": step}
    if average > 1:
        decoders = [weights["decoder"]] + [adain_jax.load_weights(weights_lib.checkpoint_dir(workdir, s))["decoder"]
                                           for s in chosen[:-1]]
        # Summed in float64 and rounded once to float32.
        weights = {**weights, "decoder": jax.tree.map(
            lambda *a: np.mean([np.asarray(x, np.float64) for x in a], axis=0).astype(np.float32), *decoders)}
        manifest["averaged_steps"] = chosen
    try:
        manifest["config"] = checkpointing.read_meta(workdir, step).get("config")
    except Exception as e:  # the weights are what matter; a damaged meta item only loses the record of the config
        print(f"warning: {weights_lib.checkpoint_dir(workdir, step)}: config not recorded, its meta item is "
              f"unreadable ({type(e).__name__})", file=sys.stderr)
    return weights_lib.save_weights(weights, out, {**manifest, **(extra or {})}, dtype=dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True, help="training workdir")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="weights directory to write")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--average", type=int, default=1, metavar="K",
                        help="the mean of the decoders of the last K checkpoints up to the step (default 1: none)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="how the arrays are stored (float16 halves the file; they load as float32)")
    args = parser.parse_args(argv)
    try:
        out = export(args.workdir, args.out, args.step, average=args.average, dtype=np.dtype(args.dtype))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
