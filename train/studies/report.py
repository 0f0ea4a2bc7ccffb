"""``W/report.md`` of a study: loss curves (PNG), a table of final and held-out numbers, picture grids (PNG),
and the page's text (`markdown`, whose template is `_TEMPLATE`).

Plots use matplotlib's Agg backend (no display needed); the grids `adain_jax.io.sheets.contact_sheet`.
Every file is written to a temporary name and renamed, so a report is never half-written.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Mapping, Sequence

LOSSES_PNG = "losses.png"
GRID_PNG = "grid.png"
REPORT_MD = "report.md"
TRAIN_KEYS = ("loss", "content_loss", "style_loss")
# Columns of the held-out part of the table: (score key, header).
HELDOUT_COLUMNS = (("content_loss", "held-out content"), ("style_loss", "held-out style"),
                   ("q_content_loss", "q content"), ("q_style_loss", "q style"), ("q_gram_loss", "q Gram"),
                   ("q_ssim", "q SSIM"), ("q_color_distance", "q colour EMD"))


def _replace(tmp: pathlib.Path, path: pathlib.Path) -> None:
    os.replace(tmp, path)


def loss_figure(curves: Mapping[str, list[dict]], path: pathlib.Path, title: str) -> None:
    """Two panels (content loss, style loss) against the step, one line per variant, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("content_loss", "style_loss")):
        for label, records in curves.items():
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="." if len(points) < 20 else None, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(key.replace("_", " ") + " (mean over each log window)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    _replace(tmp, path)


def save_grid(rows: Sequence[Sequence], labels: Sequence[str], row_labels: Sequence[str], header: str,
              path: pathlib.Path, cell: int = 128) -> None:
    from adain_jax.io import images as image_io
    from adain_jax.io import sheets

    image_io.save_image(path, sheets.contact_sheet(rows, labels=labels, row_labels=row_labels, header=header, cell=cell))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def table(rows: Sequence[Mapping], columns: Sequence[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` (dicts) with ``(key, header)`` columns."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[k]) if isinstance(row.get(k), str) else _fmt(row.get(k))
                                      for k, _ in columns) + " |")
    return "\n".join(lines)


def final_window(records: list[dict]) -> dict:
    """The last logged record (itself the mean over the last ``log_every`` steps)."""
    return records[-1] if records else {}


def write_markdown(workdir: pathlib.Path, text: str) -> pathlib.Path:
    path = workdir / REPORT_MD
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    _replace(tmp, path)
    return path


def result_rows(study, chosen: Sequence, curves: Mapping[str, list[dict]], results: Mapping[str, Mapping],
                alphas: Sequence[float]) -> tuple[list[dict], list[tuple[str, str]]]:
    """The table's rows (one per variant and alpha: last training window and held-out scores) and columns."""
    rows = []
    for variant in chosen:
        final = final_window(curves[variant.label])
        for alpha in alphas:
            rows.append({"variant": variant.label, "alpha": alpha, "steps": final.get("step"),
                         **{f"train_{k}": final.get(k) for k in TRAIN_KEYS},
                         **results[variant.name][alpha]["scores"]})
    columns = [("variant", "variant")] + ([("alpha", "alpha")] if study.alpha_grid else []) + [
        ("steps", "steps"), ("train_content_loss", "train content"), ("train_style_loss", "train style")] + list(
        HELDOUT_COLUMNS)
    return rows, columns


def picture_grid(study, chosen: Sequence, heldout_pairs: tuple[Any, Any, Sequence[str]],
                 results: Mapping[str, Mapping], alphas: Sequence[float], shown: Sequence[int],
                 vgg_line: str) -> tuple[list[list], list[str], list[str], str]:
    """`save_grid`'s (rows, labels, row_labels, header) for the ``shown`` held-out pairs: a row per pair
    and variant across the alphas (alpha studies), else a column per pair and a row per variant."""
    content, style, names = heldout_pairs
    header = f"{study.name}: held-out pairs" + (" (RANDOM VGG)" if "RANDOM" in vgg_line else "")
    if study.alpha_grid:
        rows, row_labels = [], []
        for p in shown:
            for variant in chosen:
                rows.append([content[p], style[p]] + [results[variant.name][a]["images"][p] for a in alphas])
                row_labels.append(f"{names[p]}, {variant.label}")
        return rows, ["content", "style"] + [f"alpha {a:g}" for a in alphas], row_labels, header
    rows = [[content[p] for p in shown], [style[p] for p in shown]] + [
        [results[v.name][1.0]["images"][p] for p in shown] for v in chosen]
    return rows, [names[p] for p in shown], ["content", "style"] + [v.label for v in chosen], header


GPU_OVERRIDES = ("--config.vgg=weights/flax --config.content=coco/2017 --config.style=/data/wikiart "
                 "--config.heldout_content=/data/heldout/content --config.heldout_style=/data/heldout/style "
                 "--config.image_size=512 --config.crop_size=256 --config.batch_size=8 --config.lr=1e-4 "
                 "--config.num_steps=160000 --config.log_every=100 --config.checkpoint_every=10000 "
                 "--config.num_workers=16 --config.eval_size=512")

_TEMPLATE = """# Study `{study.name}`: {study.title}

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

![content and style loss of every variant]({losses_png})

## Final and held-out numbers

{table}

*train content / style*: the last logged window of metrics.jsonl (mean over its last {config.log_every} steps).
*held-out content / style*: the variant's own training objective (its input normalisation and skips) on the
{pairs} held-out pairs, per-image style statistics, unclipped output. *q ...*: `adain_jax.quality.metrics`
on the clipped stylized images, all measured with the same raw-input VGG: content loss (relu4_1 vs the AdaIN
target), mean/std style loss, Gram style loss, SSIM against the content (higher is better) and the colour
histogram distance to the style. Lower is better for all but SSIM.

## Pictures

![held-out pairs for every variant]({grid_png})

## Full scale on a GPU, with the official VGG

```bash
python -m convert.vgg_to_flax --download --out weights/flax
python -m train.studies --study {study.name} --workdir workdir/study-{study.name} \\
    {gpu_overrides}
```

(160k steps per variant is the paper's schedule, about a day per variant on one GPU; the study trained
for 30 epochs of 40,000 COCO images, about 150k steps at batch 8. Pass your own held-out folders.)
"""


def markdown(study, config, split, vgg_line: str, command: str, workdir: pathlib.Path, table_text: str,
             pairs: int) -> str:
    """The text of ``report.md`` (`_TEMPLATE` filled in)."""
    return _TEMPLATE.format(study=study, config=config, split=split, vgg_line=vgg_line, command=command,
                            workdir=workdir, table=table_text, pairs=pairs, losses_png=LOSSES_PNG,
                            grid_png=GRID_PNG, gpu_overrides=GPU_OVERRIDES)
