"""train/studies: the study definitions, the held-out split, and each study end to end on a tiny budget."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from helpers import ROOT
from training_helpers import make_image_folder, subprocess_env, write_vgg_dir
from train.errors import SetupError
from train.studies import data, definitions, runner


def study_config(tmp, **overrides):
    from train.configs import study

    config = study.get_config()
    config.update(dict(content=str(tmp / "content"), style=str(tmp / "style"), image_size=32, crop_size=32,
                       batch_size=2, num_steps=2, log_every=1, checkpoint_every=2, num_workers=1, prefetch=1,
                       progress_bar=False, heldout_count=2, eval_size=32, grid_pairs=2))
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    make_image_folder(root / "content", 5, seed=1)
    make_image_folder(root / "style", 5, seed=2)
    write_vgg_dir(root / "vgg")
    return root


def test_every_variant_is_a_valid_training_config():
    from train import train
    from train.configs import default

    keys = set(default.get_config().keys())
    for study in definitions.STUDIES.values():
        names = [v.name for v in study.variants]
        assert len(set(names)) == len(names), study.name
        for variant in study.variants:
            assert set(variant.overrides) <= keys, (study.name, variant.overrides)
            config = default.get_config()
            config.update(dict(variant.overrides))
            train.variant_from_config(config)  # raises SetupError for a value the trainer rejects
    skip = definitions.STUDIES["skip"]
    assert {(v.overrides.get("skip"), v.overrides.get("skip_source")) for v in skip.variants} == {
        ("none", None), ("add", "content"), ("add", "style"), ("add", "both"), ("concat", "content"),
        ("concat", "style")}
    assert definitions.select(skip, "none, concat-style") == (skip.variants[0], skip.variants[-1])
    with pytest.raises(ValueError, match="no variant 'nope'"):
        definitions.select(skip, "nope")


def test_split_is_seeded_disjoint_and_made_of_links(folders, tmp_path):
    config = study_config(folders)
    first = data.split(config, tmp_path / "a")
    again = data.split(config, tmp_path / "b")
    assert [p.name for p in first.heldout_content] == [p.name for p in again.heldout_content]
    assert len(first.heldout_content) == len(first.heldout_style) == 2
    for kind, held in (("content", first.heldout_content), ("style", first.heldout_style)):
        train_dir = pathlib.Path(getattr(first, f"train_{kind}"))
        trained = {os.path.realpath(p) for p in train_dir.iterdir()}
        assert all(p.is_symlink() for p in train_dir.iterdir())
        assert len(trained) == 3 and not trained & {os.path.realpath(p) for p in held}
    other = {tuple(p.name for p in data.split(study_config(folders, seed=s), tmp_path / f"s{s}").heldout_style)
             for s in range(1, 6)}
    assert len(other) > 1  # the seed chooses
    with pytest.raises(SetupError, match="too few"):
        data.split(study_config(folders, heldout_count=5), tmp_path / "c")
    given = data.split(study_config(folders, heldout_content=str(folders / "style")), tmp_path / "d")
    assert given.train_content == str(folders / "content") and given.heldout_content[0].parent == folders / "style"


def test_describe_vgg_says_random(folders, tmp_path):
    line, is_random = data.describe_vgg(folders / "vgg")
    assert is_random and "RANDOM" in line
    line, is_random = data.describe_vgg(data.random_vgg(tmp_path, 0))
    assert is_random and "RANDOM" in line


def _png(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_alpha_grid_smoke_and_rerun_does_not_retrain(folders, tmp_path, capsys):
    """The alpha grid with one style weight end to end (the full studies are the slow test below): report,
    curves, grid; a second run trains nothing and reports again."""
    config = study_config(folders, vgg=str(folders / "vgg"), alphas="0,1")
    work = tmp_path / "w"
    report = runner.run_study("alpha_grid", config, work, variants="sw100")
    err = capsys.readouterr().err
    assert "[1/1] alpha_grid: style weight 100" in err and "training steps 1..2" in err
    text = report.read_text()
    assert "RANDOM VGG" in text and "--config.vgg=weights/flax" in text
    rows = [line for line in text.splitlines() if line.startswith("| style weight")]
    assert len(rows) == 2  # 1 variant x 2 alphas
    final = json.loads((work / "sw100" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"| style weight 100 | 0 | 2 | {final['content_loss']:.4g} | {final['style_loss']:.4g} |" in text
    # alpha 0 decodes the content's own features: another picture, so other held-out numbers.
    alpha0, alpha1 = ([c.strip() for c in row.strip("|").split("|")] for row in rows)
    assert alpha0[1] == "0" and alpha1[1] == "1" and alpha0[5:] != alpha1[5:]
    assert _png(work / "losses.png")[0] > 400
    width, height = _png(work / "grid.png")
    assert width > 4 * 128 and height > 2 * 128  # content, style, 2 alphas; 2 pairs
    mtime = (work / "sw100" / "metrics.jsonl").stat().st_mtime_ns

    report = runner.run_study("alpha_grid", config, work, variants="sw100")
    err = capsys.readouterr().err
    assert "already trained (step 2)" in err and "training steps" not in err
    assert (work / "sw100" / "metrics.jsonl").stat().st_mtime_ns == mtime
    assert report.read_text().count("| style weight 100 |") == 2


def test_cli_needs_a_vgg(tmp_path):
    result = subprocess.run([sys.executable, "-m", "train.studies", "--study", "skip", f"--workdir={tmp_path / 'w'}"],
                            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no VGG: pass --config.vgg=DIR")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(definitions.STUDIES))
def test_every_study_end_to_end(folders, tmp_path, name):
    """Every variant of every study trains 2 steps and is scored; the report has a row per variant (x alpha)."""
    config = study_config(folders, vgg=str(folders / "vgg"))
    report = runner.run_study(name, config, tmp_path / "w")
    study = definitions.STUDIES[name]
    text = report.read_text()
    rows = len(study.variants) * (len(config.alphas.split(",")) if study.alpha_grid else 1)
    table = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert len(table) == rows
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(c not in ("-", "nan") for c in cells), line
    for variant in study.variants:
        assert (tmp_path / "w" / variant.name / "metrics.jsonl").exists()
    _png(tmp_path / "w" / "grid.png")
    _png(tmp_path / "w" / "losses.png")
