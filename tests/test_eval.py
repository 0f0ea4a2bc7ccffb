"""``adain-jax eval`` (adain_jax/cli/eval.py): results found by stylize's names, failures reported, JSON/CSV."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from adain_jax.cli import main
from adain_jax.io import images as image_io
from adain_jax.quality import metrics
from helpers import write_image

SIZE = (40, 48)  # content height, width


@pytest.fixture
def folders(tmp_path):
    contents = tmp_path / "content"
    styles = tmp_path / "style"
    results = tmp_path / "results"
    for i, name in enumerate(("a", "b", "c", "d")):
        write_image(contents / f"{name}.png", *SIZE, seed=i)
    write_image(styles / "s.png", 36, 44, seed=10)
    write_image(results / "a_stylized_s.png", *SIZE, seed=20)           # a: a good result
    (results / "b_stylized_s.jpg").write_bytes(b"this is not an image")  # b: unreadable
    # c: no result at all
    write_image(results / "d_stylized_s.png", 2 * SIZE[0], 2 * SIZE[1], seed=21)  # d: another size
    return contents, styles, results


def test_eval_scores_the_rest_and_reports_missing_and_unreadable(folders, weights_dir, tmp_path, capsys, random_weights):
    contents, styles, results = folders
    out_json, out_csv = tmp_path / "scores.json", tmp_path / "scores.csv"
    rc = main(["eval", "--content", str(contents), "--style", str(styles), "--results", str(results),
               "--weights", str(weights_dir), "--content-size", "0", "--style-size", "0",
               "--json", str(out_json), "--csv", str(out_csv)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "b_stylized_s.jpg" in captured.err and "not an image" in captured.err
    assert "c_stylized_s.jpg" in captured.err and "no result file" in captured.err
    assert "2 pair(s) scored, 2 failed" in captured.out
    assert "NOT the official" in captured.out

    report = json.loads(out_json.read_text())
    assert [r["content"].rsplit("/", 1)[-1] for r in report["pairs"]] == ["a.png", "d.png"]
    assert {f["content"].rsplit("/", 1)[-1] for f in report["failed"]} == {"b.png", "c.png"}
    first = report["pairs"][0]
    assert first["stylized"].endswith("a_stylized_s.png")  # found under another extension than --ext jpg
    for name in metrics.METRICS:
        assert all(math.isfinite(r[name]) for r in report["pairs"])
        assert report["mean"][name] == pytest.approx(np.mean([r[name] for r in report["pairs"]]))

    # The numbers are those of the library on the same files (the CLI only finds and loads them).
    load = image_io.load_image
    want = metrics.evaluate(random_weights["encoder"], load(contents / "a.png")[None], load(styles / "s.png")[None],
                            load(results / "a_stylized_s.png")[None])
    for name in metrics.METRICS:
        assert first[name] == pytest.approx(float(want[name][0]), rel=1e-6)

    rows = list(csv.DictReader(out_csv.open()))
    assert [r["content"].rsplit("/", 1)[-1] for r in rows] == ["a.png", "d.png", "mean"]
    assert float(rows[0]["content_loss"]) == pytest.approx(first["content_loss"])
    assert float(rows[-1]["ssim"]) == pytest.approx(report["mean"]["ssim"])


def test_eval_without_results_stylizes_with_the_weights(folders, weights_dir, tmp_path, capsys):
    contents, styles, _ = folders
    out_json = tmp_path / "scores.json"
    rc = main(["eval", "--content", str(contents / "a.png"), "--style", str(styles / "s.png"),
               "--weights", str(weights_dir), "--content-size", "0", "--style-size", "0", "--json", str(out_json)])
    assert rc == 0
    (record,) = json.loads(out_json.read_text())["pairs"]
    assert record["stylized"] is None
    assert record["content_loss"] > 0 and record["style_loss"] > 0
    assert "| **mean** |" in capsys.readouterr().out


def test_eval_bad_arguments_exit_2(folders, tmp_path, capsys):
    contents, styles, _ = folders
    rc = main(["eval", "--content", str(contents), "--style", str(styles), "--weights", str(tmp_path / "nowhere")])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["eval", "--content", "a.png", "--style", "s.png", "--content-size", "-1"])
    assert e.value.code == 2
