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
from collections.abc import Sequence

import numpy as np

from train.errors import SetupError
from train.studies import data, definitions, heldout, report

# Keys that change what a variant learns: a finished variant trained with other values is reported.
RECIPE_KEYS = ("style_weight", "content_weight", "lr", "lr_decay", "batch_size", "crop_size", "image_size", "seed",
               "skip", "skip_source", "input_norm", "statistics", "dtype", "init_decoder")


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
    return _write_report(study, chosen, config, workdir, split, vgg_line, (content, style, names), results, curves,
                         command)


def _write_report(study, chosen, config, workdir, split, vgg_line, heldout_pairs, results, curves,
                  command) -> pathlib.Path:
    """The loss figure, the picture grid and ``report.md``; ``heldout_pairs``: (content, style, names)."""
    names = heldout_pairs[2]
    alphas = _alphas(config, study)
    report.loss_figure(curves, workdir / report.LOSSES_PNG, study.title)
    rows, columns = report.result_rows(study, chosen, curves, results, alphas)
    shown = _grid_pairs(len(names), int(config.grid_pairs))
    report.save_grid(*report.picture_grid(study, chosen, heldout_pairs, results, alphas, shown, vgg_line),
                     workdir / report.GRID_PNG)
    command = command or f"python -m train.studies --study {study.name} --workdir {shlex.quote(str(workdir))}"
    path = report.write_markdown(workdir, report.markdown(study, config, split, vgg_line, command, workdir,
                                                          report.table(rows, columns), len(names)))
    say(f"wrote {path}")
    return path
