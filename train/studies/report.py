"""``W/report.md`` of a study: loss curves (PNG), a table of final and held-out numbers, picture grids (PNG).

Plots use matplotlib's Agg backend (no display needed); the grids `adain_jax.io.sheets.contact_sheet`.
Every file is written to a temporary name and renamed, so a report is never half-written.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Mapping, Sequence

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
