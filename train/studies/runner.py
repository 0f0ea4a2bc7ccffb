"""Run a study: train its variants one after the other (resuming), score them, write the report.

`run_study(name, config, workdir)` is the whole command. Each variant gets the base config with its own
keys set, the shared training split (`train.studies.data.split`) and its own workdir ``W/<variant>``,
and trains through `train.train.train_and_evaluate` in this process. A variant whose latest checkpoint
has reached ``num_steps`` is not trained again; its curves come from ``W/<variant>/metrics.jsonl``.
"""

from __future__ import annotations

import copy
import json
import pathlib
import shlex
import sys
from typing import Sequence

import numpy as np

from train.errors import SetupError
from train.studies import data, definitions, heldout, report

# Keys that change what a variant learns: a finished variant trained with other values is reported.
RECIPE_KEYS = ("style_weight", "content_weight", "lr", "lr_decay", "batch_size", "crop_size", "image_size", "seed",
               "skip", "skip_source", "input_norm", "statistics", "dtype", "init_decoder")
GPU_OVERRIDES = ("--config.vgg=weights/flax --config.content=coco/2017 --config.style=/data/wikiart "
                 "--config.heldout_content=/data/heldout/content --config.heldout_style=/data/heldout/style "
                 "--config.image_size=512 --config.crop_size=256 --config.batch_size=8 --config.lr=1e-4 "
                 "--config.num_steps=160000 --config.log_every=100 --config.checkpoint_every=10000 "
                 "--config.num_workers=16 --config.eval_size=512")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def variant_config(config, split: data.Split, variant: definitions.Variant):
    vconfig = copy.deepcopy(config)
    for key, value in variant.overrides.items():
        vconfig[key] = value
    vconfig.content, vconfig.style = split.train_content, split.train_style
    return vconfig


def trained_step(directory: pathlib.Path) -> int:
    from adain_jax.io import weights as weights_lib

    steps = weights_lib.checkpoint_steps(directory)
    return steps[-1] if steps else 0


def _recipe_changes(directory: pathlib.Path, vconfig) -> list[str]:
    try:
        old = json.loads((directory / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return []
    return [f"{k}={old.get(k)!r} (now {vconfig.get(k)!r})" for k in RECIPE_KEYS
            if k in old and old.get(k) != vconfig.get(k)]


def train_variants(config, workdir: pathlib.Path, split: data.Split, chosen: Sequence[definitions.Variant],
                   study: definitions.Study) -> None:
    from train import train

    for i, variant in enumerate(chosen, 1):
        vconfig = variant_config(config, split, variant)
        directory = workdir / variant.name
        done = trained_step(directory)
        prefix = f"[{i}/{len(chosen)}] {study.name}: {variant.label} ({directory})"
        if done >= vconfig.num_steps:
            changes = _recipe_changes(directory, vconfig)
            note = f"; it was trained with {', '.join(changes)}: delete it to retrain" if changes else ""
            say(f"{prefix}: already trained (step {done}){note}")
            continue
        say(f"{prefix}: training steps {done + 1}..{vconfig.num_steps}")
        train.train_and_evaluate(vconfig, directory)


def _alphas(config, study: definitions.Study) -> list[float]:
    if not study.alpha_grid:
        return [1.0]
    try:
        alphas = [float(a) for a in str(config.alphas).split(",") if a.strip()]
    except ValueError:
        raise SetupError(f"config.alphas must be comma-separated numbers, got {config.alphas!r}") from None
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise SetupError(f"config.alphas must be numbers in [0, 1], got {config.alphas!r}")
    return alphas


def _grid_pairs(count: int, wanted: int) -> list[int]:
    return sorted(set(np.linspace(0, count - 1, min(max(wanted, 1), count)).round().astype(int).tolist()))


def run_study(name: str, config, workdir, *, variants: str | None = None, random_vgg: bool = False,
              command: str | None = None) -> pathlib.Path:
    """Train, score and report study ``name`` in ``workdir``; returns the report's path. SetupError for bad input."""
    if name not in definitions.STUDIES:
        raise SetupError(f"unknown study {name!r}: choose one of {', '.join(definitions.STUDIES)}")
    study = definitions.STUDIES[name]
    try:
        chosen = definitions.select(study, variants)
    except ValueError as e:
        raise SetupError(str(e)) from None
    workdir = pathlib.Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(config)
    if random_vgg:
        config.vgg = str(data.random_vgg(workdir, config.seed))
    elif not str(config.vgg).strip():
        raise SetupError("no VGG: pass --config.vgg=DIR (e.g. weights/flax from `python -m convert.vgg_to_flax`), "
                         "or --random_vgg for a machinery check on random weights (the report says so)")
    if int(config.eval_size) < 16:
        raise SetupError(f"config.eval_size must be at least 16 pixels (SSIM's 11x11 window), got {config.eval_size}")
    if not config.tfds_data_dir:
        config.tfds_data_dir = str(workdir / "tfds")  # the prepared training folders stay with the study
    alphas = _alphas(config, study)
    split = data.split(config, workdir)
    vgg_line, _ = data.describe_vgg(config.vgg)
    say(f"study {study.name}: {len(chosen)} variant(s) in {workdir}; VGG: {vgg_line}")
    train_variants(config, workdir, split, chosen, study)

    from adain_jax.io import weights as weights_lib
    from train import metric_writer

    content, style, names = heldout.load_pairs(split.heldout_content, split.heldout_style, int(config.eval_size))
    results, curves = {}, {}
    for variant in chosen:
        say(f"scoring {variant.label} on {len(names)} held-out pairs")
        results[variant.name] = heldout.evaluate(weights_lib.load_weights(workdir / variant.name), content, style,
                                                 alphas)
        curves[variant.label] = metric_writer.read_metrics(workdir / variant.name)
    return _write_report(study, chosen, config, workdir, split, vgg_line, names, content, style, alphas, results,
                         curves, command)


def _write_report(study, chosen, config, workdir, split, vgg_line, names, content, style, alphas, results, curves,
                  command) -> pathlib.Path:
    report.loss_figure(curves, workdir / report.LOSSES_PNG, study.title)
    rows = []
    for variant in chosen:
        final = report.final_window(curves[variant.label])
        for alpha in alphas:
            row = {"variant": variant.label, "alpha": alpha, "steps": final.get("step"),
                   **{f"train_{k}": final.get(k) for k in report.TRAIN_KEYS},
                   **results[variant.name][alpha]["scores"]}
            rows.append(row)
    columns = [("variant", "variant")] + ([("alpha", "alpha")] if study.alpha_grid else []) + [
        ("steps", "steps"), ("train_content_loss", "train content"), ("train_style_loss", "train style")] + list(
        report.HELDOUT_COLUMNS)

    shown = _grid_pairs(len(names), int(config.grid_pairs))
    header = f"{study.name}: held-out pairs" + (" (RANDOM VGG)" if "RANDOM" in vgg_line else "")
    if study.alpha_grid:
        grid_rows, row_labels = [], []
        for p in shown:
            for variant in chosen:
                grid_rows.append([content[p], style[p]] + [results[variant.name][a]["images"][p] for a in alphas])
                row_labels.append(f"{names[p]}, {variant.label}")
        labels = ["content", "style"] + [f"alpha {a:g}" for a in alphas]
    else:
        grid_rows = [[content[p] for p in shown], [style[p] for p in shown]] + [
            [results[v.name][1.0]["images"][p] for p in shown] for v in chosen]
        row_labels = ["content", "style"] + [v.label for v in chosen]
        labels = [names[p] for p in shown]
    report.save_grid(grid_rows, labels, row_labels, header, workdir / report.GRID_PNG)

    command = command or f"python -m train.studies --study {study.name} --workdir {shlex.quote(str(workdir))}"
    text = f"""# Study `{study.name}`: {study.title}

VGG: {vgg_line}

Command: `{command}`

Every variant trained {config.num_steps} steps from the same seed ({config.seed}) on the same data: batch
{config.batch_size}, {config.crop_size} px crops of images resized to {config.image_size} px, lr {config.lr:g}
(inverse-time decay {config.lr_decay:g}), content weight {config.content_weight:g}, style weight
{config.style_weight:g} unless the variant sets it. Training content: `{split.train_content}`; style:
`{split.train_style}`. Held-out pairs: {split.how} Images are centre-cropped to {config.eval_size} px.
Workdirs: `{workdir}/<variant>` (checkpoints, metrics.jsonl, TensorBoard).

## What the MVA study reports

{study.expected}

## Loss curves

![content and style loss of every variant]({report.LOSSES_PNG})

## Final and held-out numbers

{report.table(rows, columns)}

*train content / style*: the last logged window of metrics.jsonl (mean over its last {config.log_every} steps).
*held-out content / style*: the variant's own training objective (its input normalisation and skips) on the
{len(names)} held-out pairs, per-image style statistics, unclipped output. *q ...*: `adain_jax.quality.metrics`
on the clipped stylized images, all measured with the same raw-input VGG: content loss (relu4_1 vs the AdaIN
target), mean/std style loss, Gram style loss, SSIM against the content (higher is better) and the colour
histogram distance to the style. Lower is better for all but SSIM.

## Pictures

![held-out pairs for every variant]({report.GRID_PNG})

## Full scale on a GPU, with the official VGG

```bash
python -m convert.vgg_to_flax --download --out weights/flax
python -m train.studies --study {study.name} --workdir workdir/study-{study.name} \\
    {GPU_OVERRIDES}
```

(160k steps per variant is the paper's schedule, about a day per variant on one GPU; the study trained
for 30 epochs of 40,000 COCO images, about 150k steps at batch 8. Pass your own held-out folders.)
"""
    path = report.write_markdown(workdir, text)
    say(f"wrote {path}")
    return path
