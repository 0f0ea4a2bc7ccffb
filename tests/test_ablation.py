"""train.ablation: every row trained with the same budget into its own workdir, never retrained, measured
with the cached classifier's Fréchet distance, and the report (smoke in-process; the full command slow)."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import ROOT
from gan_helpers import gan_command, tiny_config
from training_helpers import SUBPROCESS_TIMEOUT, subprocess_env
from train import ablation, gan


def test_rows_switch_only_their_keys_and_keep_the_budget():
    config = tiny_config(num_steps=7, seed=3)
    configs = {row.name: ablation.row_config(config, row) for row in ablation.ROWS}
    assert [r.name for r in ablation.ROWS] == ["B", "C", "D", "E", "F"]
    b, f = gan.generator_config(configs["B"]), gan.generator_config(configs["F"])
    assert (b.use_mapping, b.use_styles, b.const_input, b.use_noise) == (False, False, False, False)
    assert (f.use_mapping, f.use_styles, f.const_input, f.use_noise) == (True, True, True, True)
    assert configs["B"].mixing_prob == 0.0 and configs["E"].mixing_prob == 0.0 and configs["F"].mixing_prob == 0.9
    # Each row adds exactly one change to the one above.
    names = [r.name for r in ablation.ROWS]
    for above, row in zip(names, names[1:]):
        changed = {k for k in ablation.ROWS[0].switches if configs[above][k] != configs[row][k]}
        assert len(changed - {"use_styles"}) == 1, (row, changed)
    assert all(c.num_steps == 7 and c.seed == 3 for c in configs.values())
    assert config.use_noise is True  # the base config is not changed
    with pytest.raises(Exception, match="unknown row"):
        ablation.select_rows("B,Z")


def test_ablation_smoke_trains_measures_and_never_retrains(tmp_path, caplog):
    config = tiny_config(num_steps=2, checkpoint_every=2)
    path = ablation.run(config, tmp_path, "B")  # the full model's training is test_gan's
    report = path.read_text()
    results = json.loads((tmp_path / "ablation.json").read_text())
    assert set(results["rows"]) == {"B"}
    assert all(r["step"] == 2 and r["fd"] > 0 for r in results["rows"].values())
    assert "FD-digits (classifier features)" in report and "not FID" in report
    assert "| C | + mapping network and styles | not run | 5.34 | 4.85 |" in report
    assert "| B | baseline: traditional input" in report and "[grid](B/grid.png)" in report
    assert (tmp_path / "B" / "grid.png").is_file() and (tmp_path / "classifier" / "info.json").is_file()
    classifier_mtime = (tmp_path / "classifier" / "params.npz").stat().st_mtime_ns
    # Again: nothing is trained (rows finished, classifier cached), the same numbers come out.
    assert ablation.train_rows(config, tmp_path, ablation.select_rows("B")) == {}
    ablation.run(config, tmp_path, "B")
    again = json.loads((tmp_path / "ablation.json").read_text())
    assert again["rows"] == results["rows"]
    assert (tmp_path / "classifier" / "params.npz").stat().st_mtime_ns == classifier_mtime


@pytest.mark.slow
def test_ablation_command_runs_every_row(tmp_path):
    command = gan_command("train.ablation", tmp_path, num_steps=4)
    proc = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=3 * SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "ablation.json").read_text())
    assert sorted(results["rows"]) == ["B", "C", "D", "E", "F"]
    assert "| E | + noise inputs |" in proc.stdout
    bad = subprocess.run(gan_command("train.ablation", tmp_path / "x") + ["--rows=Q"], cwd=ROOT,
                         env=subprocess_env(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --rows: unknown row")
