"""Copy a training checkpoint's weights into a standalone weights directory.

    python -m train.export --workdir WORKDIR --out weights/trained [--step N] [--dtype float16]

The result has the layout `convert/vgg_to_flax.py` writes (``weights.npz`` + ``manifest.json``), so it
can be moved, shared or passed to ``adain-jax stylize --weights`` without the rest of the workdir.
(``adain-jax stylize --weights WORKDIR`` also works directly, using the latest checkpoint.) A decoder
variant (``config.skip``/``skip_source``/``input_norm``) is read from the checkpoint by `load_weights`
and recorded in the manifest by `save_weights`, so the exported directory rebuilds the same network.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from adain_jax.io import weights as weights_lib


def export(workdir, out, step: int | None = None, *, dtype=np.float32, extra: dict | None = None) -> pathlib.Path:
    """Write the weights of checkpoint ``step`` (default: the latest) of ``workdir`` to ``out``, stored as
    ``dtype``, with ``extra`` added to the manifest."""
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
    weights = adain_jax.load_weights(weights_lib.checkpoint_dir(workdir, step))
    manifest = {"source": "adain-jax training", "workdir": str(workdir.absolute()), "step": step}
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
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="how the arrays are stored (float16 halves the file; they load as float32)")
    args = parser.parse_args(argv)
    try:
        out = export(args.workdir, args.out, args.step, dtype=np.dtype(args.dtype))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
