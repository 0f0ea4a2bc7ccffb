"""Copy a training checkpoint's weights into a standalone weights directory.

    python -m train.export --workdir WORKDIR --out weights/trained [--step N]

The result has the layout `convert/vgg_to_flax.py` writes (``weights/`` + ``manifest.json``), so it
can be moved, shared or passed to ``adain-jax stylize --weights`` without the rest of the workdir.
(``adain-jax stylize --weights WORKDIR`` also works directly, using the latest checkpoint.)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from train.checkpointing import CHECKPOINTS, WEIGHTS


def export(workdir, out, step: int | None = None) -> pathlib.Path:
    """Write the weights of checkpoint ``step`` (default: the latest) of ``workdir`` to ``out``."""
    import adain_jax
    from adain_jax.io import weights as weights_lib

    workdir = pathlib.Path(workdir)
    if step is None:
        source = weights_lib.resolve_weights_dir(workdir)  # FileNotFoundError with a clear message
    else:
        source = workdir / CHECKPOINTS / str(step)
        if not (source / WEIGHTS).is_dir():
            raise FileNotFoundError(f"{source}: no such checkpoint (steps: {', '.join(_steps(workdir)) or 'none'})")
    weights = adain_jax.load_weights(source)
    manifest = {"source": "adain-jax training", "workdir": str(workdir.absolute()), "step": int(source.name)
                if source.name.isdigit() else None}
    meta = source / "meta" / "metadata"
    if meta.exists():
        try:
            manifest["config"] = json.loads(meta.read_text()).get("config")
        except (OSError, ValueError):
            pass
    return adain_jax.save_weights(weights, out, manifest)


def _steps(workdir) -> list[str]:
    directory = pathlib.Path(workdir) / CHECKPOINTS
    return sorted((p.name for p in directory.iterdir() if p.name.isdigit()), key=int) if directory.is_dir() else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True, help="training workdir")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="weights directory to write")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    args = parser.parse_args(argv)
    try:
        out = export(args.workdir, args.out, args.step)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
