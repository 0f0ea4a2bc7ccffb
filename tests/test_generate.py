"""``adain-jax generate``: seed parsing, pictures from a StyleGAN workdir, and bad input (exit 2)."""

import argparse

import jax
import numpy as np
import pytest
from PIL import Image

from adain_jax import cli
from adain_jax import stylegan as sg
from adain_jax.cli.generate import seed_grid, seed_list

TINY = sg.GeneratorConfig(resolution=8, latent_dim=16, max_features=16, min_features=8, mapping_layers=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sg")
    g = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.3 if "noise_strength" in jax.tree_util.keystr(p) else x, sg.init_generator(TINY, 0))
    sg.save_generator(path, 100, g, TINY, np.zeros(16, np.float32))
    return path


def test_seed_lists():
    assert seed_list("0-3") == [0, 1, 2, 3]
    assert seed_list("1,5,9") == [1, 5, 9]
    assert seed_list("0-2, 7 ,10-11") == [0, 1, 2, 7, 10, 11]
    assert seed_grid("0-1:5") == ([0, 1], [5])
    for bad in ("a", "5-3", "-1", "1,,2", "", "0-4294967296"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_list(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        seed_grid("0-3")


def test_generate_writes_seeds_and_pictures_reproducibly(workdir, tmp_path):
    args = ["generate", "--workdir", str(workdir), "--seeds", "0-2,9", "--truncation", "0.7", "--cutoff", "2",
            "--mixing-grid", "0-1:2-3", "--truncation-sweep", "--noise-study", "--noise-draws", "2", "--cell", "16"]
    assert cli.main([*args, "--output", str(tmp_path / "a")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["noise.png", "samples.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0009.png",
                     "style_mixing.png", "truncation.png"]
    assert Image.open(tmp_path / "a" / "seed0009.png").size == (8, 8)
    assert cli.main(["generate", "--workdir", str(workdir), "--seeds", "9", "--truncation", "0.7", "--cutoff", "2",
                     "--output", str(tmp_path / "b")]) == 0
    # Same seed, same picture, whatever else is in the batch.
    a, b = (np.asarray(Image.open(tmp_path / d / "seed0009.png")) for d in ("a", "b"))
    np.testing.assert_array_equal(a, b)


def test_bad_workdir_and_options_exit_2(workdir, tmp_path, capsys):
    assert cli.main(["generate", "--workdir", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "nope: no such workdir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["generate", "--workdir", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    assert "not a StyleGAN training workdir" in capsys.readouterr().err
    assert cli.main(["generate", "--workdir", str(workdir), "--cutoff", "9", "--output", str(tmp_path / "o")]) == 2
    assert "--cutoff 9: this generator has 4 style layers" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli.main(["generate", "--workdir", str(workdir), "--output", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate", "--workdir", str(workdir), "--seeds", "3-1", "--output", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_step_picks_an_earlier_checkpoint(tmp_path, capsys):
    work = tmp_path / "w"
    for step, seed in ((10, 1), (20, 2)):  # two checkpoints with different generators
        sg.save_generator(work, step, sg.init_generator(TINY, seed), TINY, np.zeros(16, np.float32))

    def seed0(*extra):
        out = tmp_path / ("o" + "".join(extra))
        assert cli.main(["generate", "--workdir", str(work), "--seeds", "0", "--output", str(out), *extra]) == 0
        return np.asarray(Image.open(out / "seed0000.png"))

    latest, first, named_latest = seed0(), seed0("--step", "10"), seed0("--step", "20")
    np.testing.assert_array_equal(latest, named_latest)
    assert np.abs(latest.astype(int) - first.astype(int)).max() > 0
    assert cli.main(["generate", "--workdir", str(work), "--step", "15", "--output", str(tmp_path / "x")]) == 2
    assert "no such generator checkpoint" in capsys.readouterr().err
