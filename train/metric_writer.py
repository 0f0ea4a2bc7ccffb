"""Training scalars and images: ``WORKDIR/metrics.jsonl`` and TensorBoard events in ``WORKDIR/tensorboard``.

``metrics.jsonl`` has one JSON object per logged step: ``step``, ``loss``, ``content_loss``,
``style_loss``, ``lr`` and ``skipped_images`` (undecodable images met so far in this run). The
TensorBoard events hold the same scalars (``train/...``), the training speed and the sample grids.

On resume from step ``s``, both are cut back to step ``s`` first: lines of steps after ``s`` (written
by the interrupted run and about to be recomputed) are dropped from ``metrics.jsonl``, and TensorBoard
is told to purge later events (``purge_step``), so every step appears once, with the values of the run
that continued. Only process 0 writes; on other hosts the writer does nothing.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _clean(value):
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else str(value)  # JSON has no NaN/inf


def read_metrics(workdir) -> list[dict]:
    """The records of ``WORKDIR/metrics.jsonl`` (a torn last line, from a killed run, is ignored)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_metrics(workdir, last_step: int) -> None:
    """Keep only the records with ``step <= last_step`` (rewritten atomically)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return
    kept = [r for r in read_metrics(workdir) if isinstance(r.get("step"), int) and r["step"] <= last_step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


class MetricWriter:
    """Append-only scalars (JSON lines + TensorBoard) and images (TensorBoard)."""

    def __init__(self, workdir, *, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.workdir = pathlib.Path(workdir)
        self._tb = None
        self._file = None
        if not enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.workdir, resume_step)
        self._file = open(self.workdir / METRICS_FILE, "a", buffering=1)  # line-buffered
        from tensorboardX import SummaryWriter

        # purge_step: TensorBoard discards events of an earlier run at steps >= this one.
        self._tb = SummaryWriter(os.fspath(self.workdir / TENSORBOARD_DIR),
                                 purge_step=resume_step + 1 if resume_step else None)

    def write_scalars(self, step: int, scalars: Mapping[str, float], *, jsonl: bool = True,
                      prefix: str = "train/") -> None:
        if not self.enabled:
            return
        if jsonl:
            record = {"step": int(step), **{k: _clean(v) for k, v in scalars.items()}}
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        for key, value in scalars.items():
            self._tb.add_scalar(prefix + key, float(value), int(step))

    def write_image(self, step: int, name: str, image: np.ndarray) -> None:
        """An HxWx3 float image in [0, 1]."""
        if self.enabled:
            self._tb.add_image(name, np.clip(np.asarray(image, np.float32), 0.0, 1.0), int(step), dataformats="HWC")

    def flush(self) -> None:
        if self.enabled:
            self._file.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()
            self.enabled = False
