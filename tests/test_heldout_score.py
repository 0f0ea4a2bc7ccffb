"""train.heldout_score: the training objective on held-out pairs, for one model or every checkpoint of a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import write_image

from train import heldout_score


def test_spread_takes_evenly_spaced_items():
    assert heldout_score.spread(list(range(10)), 3) == [0, 3, 6]
    assert heldout_score.spread([1, 2], 5) == [1, 2]


@pytest.fixture
def heldout(tmp_path):
    for i in range(3):
        write_image(tmp_path / "h" / "content" / f"c{i}.png", 40, 44, seed=i)
        write_image(tmp_path / "h" / "style" / f"s{i}.png", 36, 40, seed=10 + i)
    return tmp_path / "h"


def test_scores_every_pair_and_matches_the_per_pair_mean(heldout, tmp_path, capsys, random_weights):
    import adain_jax

    directory = adain_jax.save_weights(random_weights, tmp_path / "w")
    assert heldout_score.main(["--weights", str(directory), "--heldout", str(heldout), "--contents", "2",
                               "--styles", "2", "--size", "32", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "4 held-out pairs" in out and "| content_loss | style_loss |" in out
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["pairs"] == ["c0 / s0", "c0 / s1", "c1 / s0", "c1 / s1"]
    scores = report["scores"][str(directory)]
    # The chunked mean equals the mean of the pairs scored one by one (up to float32 rounding: programs for
    # batches of 4 and of 1 may sum in other orders).
    content, style, _ = heldout_score.load_heldout(heldout, 2, 2, 32)
    one_by_one = [heldout_score.score(adain_jax.load_weights(directory), content[i:i + 1], style[i:i + 1])
                  for i in range(4)]
    for key in ("content_loss", "style_loss", "q_ssim"):
        np.testing.assert_allclose(scores[key], np.mean([s[key] for s in one_by_one]), rtol=2e-3)


def test_bad_folder_and_missing_checkpoints_are_one_line(heldout, tmp_path, capsys):
    assert heldout_score.main(["--weights", "random", "--heldout", str(tmp_path / "none")]) == 2
    assert "none/content: no such directory" in capsys.readouterr().err
    assert heldout_score.main(["--weights", str(tmp_path), "--all-checkpoints", "--heldout", str(heldout),
                               "--size", "32"]) == 2
    assert "--all-checkpoints needs a training workdir" in capsys.readouterr().err


def test_all_checkpoints_of_a_run_are_scored_in_step_order(heldout, tmp_path, capsys, random_weights):
    import jax

    from train import checkpointing
    from train.train import TrainState

    ckpt = checkpointing.Checkpointer(tmp_path / "run", max_to_keep=None)
    for step in (3, 6):
        weights = jax.tree.map(lambda x, scale=1 + step / 10: np.asarray(x) * scale, random_weights)
        ckpt.save(step, TrainState(step=np.int32(step), params=weights["decoder"], encoder=weights["encoder"],
                                   opt_state={"count": np.int32(step)}), meta={"data_position": 0, "config": {}})
    ckpt.close()
    assert heldout_score.main(["--weights", str(tmp_path / "run"), "--all-checkpoints", "--heldout", str(heldout),
                               "--contents", "1", "--styles", "1", "--size", "32"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| step")]
    assert [row.split("|")[1].strip() for row in rows] == ["step 3", "step 6"]
    assert rows[0] != rows[1]  # different decoders, different scores
