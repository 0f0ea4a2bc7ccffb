"""Package a training checkpoint as the model shipped with adain-jax (`adain_jax.pretrained`).

    python -m train.package --workdir workdir/packaged --step 2500 --data data/open \
        --output adain_jax/pretrained [--name adain-jax-open-v8] [--average K]

Writes, atomically, a weights directory in float16 (`train.export`, about 14 MB) whose manifest has a
``packaged`` record: the model's name and a one-line summary (what `adain_jax.io.weights.describe` and
so every command's first line shows), the VGG-19 file it was made from (md5, route, licence) and the
normalisation images (from the manifest ``config.vgg`` was written with), the data set (the hash of
``DATA/manifest.json`` and its counts), the training run (steps, the config's crop/batch/lr/dtype, the
mean losses of the last logged steps before the packaged step, the CPU, the checkpoints averaged with
``--average K`` (`train.export`: the mean of the last K checkpoints' decoders); for a run that fine-tuned a
packaged model, ``--config.vgg`` = that model with ``init_decoder="vgg"``, the parent's name, VGG record
and steps, which the summary's step count includes), and the licence text. The data
set's ``SOURCES.md`` is copied beside it, so the attribution travels with the weights.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import pathlib
import shutil
import sys

import numpy as np

from adain_jax import cpuinfo
from adain_jax.io import weights as weights_lib
from train import export, metric_writer

DEFAULT_NAME = "adain-jax-open-v8"  # the version packaged now; a new one gets --name
LOSS_WINDOW = 100  # steps whose logged means make the "final losses"
LICENCE = (
    "The encoder is the VGG-19 of K. Simonyan and A. Zisserman (Visual Geometry Group, University of Oxford), "
    "released under CC BY 4.0, as converted by Keras and normalised here. The decoder was trained by adain-jax "
    "on the images listed in SOURCES.md (each under its own licence, several requiring attribution: see there); "
    "adain-jax's code is MIT-licensed.")


class PackageError(ValueError):
    """A bad input; the message is one line naming the file and the problem."""


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PackageError(f"{path}: unreadable ({e})") from None


def final_losses(workdir, step: int) -> dict:
    """Mean of the logged losses over the last `LOSS_WINDOW` steps up to ``step`` (metrics.jsonl)."""
    records = [r for r in metric_writer.read_metrics(workdir) if step - LOSS_WINDOW < r["step"] <= step]
    if not records:
        raise PackageError(f"{workdir}: metrics.jsonl has no losses logged in steps {step - LOSS_WINDOW + 1}-{step}")
    return {key: round(float(np.mean([r[key] for r in records])), 4) for key in ("loss", "content_loss", "style_loss")}


def record(workdir: pathlib.Path, step: int, data: pathlib.Path, name: str, averaged: list[int] | None = None) -> dict:
    """The manifest's ``packaged`` record (see the module docstring)."""
    from train import checkpointing

    config = checkpointing.read_meta(workdir, step).get("config") or {}
    vgg_manifest = _read_json(pathlib.Path(config.get("vgg", "")) / weights_lib.MANIFEST)
    # A run that fine-tuned a packaged model (config.vgg = that model, init_decoder="vgg") inherits its
    # VGG record and adds its steps to the parent's.
    parent = vgg_manifest.get("packaged") if config.get("init_decoder") == "vgg" else None
    vgg = parent["vgg"] if parent else vgg_manifest.get("sources", {}).get("vgg", {})
    if not vgg.get("md5"):
        raise PackageError(f"{config.get('vgg')}: not made by convert.keras_vgg "
                           "(no md5 of the VGG file in its manifest)")
    data_manifest_path = data / "manifest.json"
    data_manifest = _read_json(data_manifest_path)
    losses = final_losses(workdir, step)
    counts = data_manifest.get("counts", {})
    total = step + (parent["training"].get("total_steps", parent["training"]["step"]) if parent else 0)
    summary = (f"Keras's ImageNet VGG-19 and a decoder trained {total:,} steps on a CPU on "
               f"{counts.get('by_split', {}).get('train', '?')} openly licensed photos and paintings")
    training = {"step": step, "total_steps": total, "final_losses": losses, "loss_window_steps": LOSS_WINDOW,
                "cpu": cpuinfo.name(),
                "config": {key: config.get(key) for key in ("image_size", "crop_size", "batch_size", "lr",
                                                             "lr_decay", "lr_warmup", "dtype", "style_weight",
                                                             "style_weight_warmup",
                                                             "content_weight", "seed", "init_decoder")}}
    if averaged and len(averaged) > 1:
        training["averaged_steps"] = averaged
    if parent:
        training["fine_tuned_from"] = {"name": parent["name"], "total_steps": total - step}
    return {
        "name": name,
        "summary": summary,
        "made": datetime.date.today().isoformat(),
        "vgg": {key: vgg.get(key) for key in ("name", "md5", "keras_md5", "route", "member", "bytes", "licence")},
        "normalisation": parent["normalisation"] if parent else vgg_manifest.get("normalisation", {}),
        "data": {"manifest_sha256": hashlib.sha256(data_manifest_path.read_bytes()).hexdigest(),
                 "recipe": data_manifest.get("recipe"), "counts": counts},
        "training": training,
        "licence": LICENCE,
    }


def package(workdir, step: int | None, data, output, name: str = DEFAULT_NAME, average: int = 1) -> pathlib.Path:
    workdir, data, output = pathlib.Path(workdir), pathlib.Path(data), pathlib.Path(output)
    steps = weights_lib.checkpoint_steps(workdir)
    if not steps:
        raise PackageError(f"{workdir}: no training checkpoints")
    step = steps[-1] if step is None else step
    packaged = record(workdir, step, data, name, export.averaged_steps(steps, step, average))
    if not (data / "SOURCES.md").is_file():
        raise PackageError(f"{data}: no SOURCES.md (made by python -m train.debian_data)")
    # The package directory also holds code (__init__.py): only the weights directory's own files are replaced.
    staging = output.parent / f".{output.name}.package-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        export.export(workdir, staging, step, average=average, dtype=np.float16,
                      extra={"packaged": packaged, "note": packaged["summary"]})
        shutil.copyfile(data / "SOURCES.md", staging / "SOURCES.md")
        output.mkdir(parents=True, exist_ok=True)
        for file in (weights_lib.WEIGHTS_FILE, "SOURCES.md", weights_lib.MANIFEST):  # manifest last: it vouches
            (staging / file).replace(output / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True, help="training workdir")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--data", type=pathlib.Path, required=True,
                        help="the data set it was trained on (python -m train.debian_data's output)")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("adain_jax/pretrained"),
                        help="where the packaged model goes (default: adain_jax/pretrained)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"the model's name (default {DEFAULT_NAME})")
    parser.add_argument("--average", type=int, default=1, metavar="K",
                        help="package the mean of the decoders of the last K checkpoints up to the step (default 1)")
    args = parser.parse_args(argv)
    try:
        out = package(args.workdir, args.step, args.data, args.output, args.name, args.average)
    except (PackageError, FileNotFoundError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {json.loads((out / weights_lib.MANIFEST).read_text())['packaged']['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
