"""benchmarks/domain_shift.py: the quick mode trains every method for a few steps and reports them all;
the domains are what the module docstring says. Nothing about accuracy is asserted (a few steps
measure nothing): the benchmark itself is run for that."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from benchmarks import domain_shift


def test_domains_render_digits_into_distinct_images():
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 32, 32), np.float32)
    masks[:, 8:24, 14:18] = 1.0  # a "1"
    mono = domain_shift.render("mono", masks, rng)
    np.testing.assert_array_equal(mono[..., 0], masks)
    for name in ("colour", "photo", "noise"):
        out = domain_shift.render(name, masks, rng)
        assert out.shape == (4, 32, 32, 3) and out.min() >= 0.0 and out.max() <= 1.0
        # the digit is visible: its pixels differ from the background's
        inside, outside = out[:, 8:24, 14:18].mean(axis=(1, 2)), out[:, :4, :4].mean(axis=(1, 2))
        assert (np.abs(inside - outside).sum(axis=-1) > 0.05).all(), name
    with pytest.raises(ValueError, match="unknown domain"):
        domain_shift.render("sketch", masks, rng)


def test_quick_mode_trains_every_method_and_writes_the_table_and_plot(tmp_path, capsys):
    assert domain_shift.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for method in domain_shift.METHODS:
        assert f"| {method} |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"] for r in results["runs"]} == set(domain_shift.METHODS)
    for run in results["runs"]:
        assert set(run["accuracy"]) == {"mono", "colour", "photo", "noise"}
        assert all(0.0 <= a <= 1.0 for a in run["accuracy"].values()) and np.isfinite(run["final_loss"])
    assert (tmp_path / "domain_shift.png").stat().st_size > 1000


def test_unknown_methods_are_refused(capsys):
    with pytest.raises(SystemExit):
        domain_shift.parse_args(["--methods", "erm,cutmix"])
    assert "unknown --methods ['cutmix']" in capsys.readouterr().err
