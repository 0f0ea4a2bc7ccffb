"""train.metric_writer: metrics.jsonl and TensorBoard events, cut back on resume."""

from __future__ import annotations

import json

import numpy as np

from train import metric_writer


def test_writes_json_lines_and_tensorboard_events(tmp_path):
    writer = metric_writer.MetricWriter(tmp_path)
    for step in (1, 2, 3):
        writer.write_scalars(step, {"loss": np.float32(1.5) / step, "lr": 1e-4, "skipped_images": 2})
    writer.write_scalars(3, {"steps_per_sec": 9.0}, jsonl=False)
    writer.write_image(3, "samples", np.zeros((8, 12, 3), np.float32))
    writer.close()
    records = metric_writer.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1] == {"step": 2, "loss": float(np.float32(1.5) / 2), "lr": 1e-4, "skipped_images": 2}
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_drops_records_after_the_restored_step_and_torn_lines(tmp_path):
    path = tmp_path / metric_writer.METRICS_FILE
    path.write_text("".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
    writer = metric_writer.MetricWriter(tmp_path, resume_step=4)
    writer.write_scalars(5, {"loss": 50.0})
    writer.close()
    assert [(r["step"], r["loss"]) for r in metric_writer.read_metrics(tmp_path)] == \
        [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0)]


def test_non_finite_values_and_disabled_writer(tmp_path):
    writer = metric_writer.MetricWriter(tmp_path / "a")
    writer.write_scalars(1, {"loss": float("nan")})
    writer.close()
    assert metric_writer.read_metrics(tmp_path / "a") == [{"step": 1, "loss": "nan"}]
    off = metric_writer.MetricWriter(tmp_path / "b", enabled=False)
    off.write_scalars(1, {"loss": 1.0})
    off.close()
    assert not (tmp_path / "b").exists()
