"""adain_jax.io.weights: atomic Orbax save, and every way to load."""

import shutil

import jax
import numpy as np
import pytest

import adain_jax
from adain_jax.io import weights


def test_save_and_load_round_trip_exactly(random_weights, tmp_path):
    weights.save_weights(random_weights, tmp_path / "w", {"origin": "test"})
    loaded = adain_jax.load_weights(tmp_path / "w")
    assert jax.tree.structure(loaded) == jax.tree.structure(random_weights)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(random_weights)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(jax.tree.leaves(loaded)[0], jax.Array)
    assert weights.read_manifest(tmp_path / "w")["origin"] == "test"


def test_load_weights_reads_the_latest_training_checkpoint(random_weights, weights_dir, tmp_path):
    workdir = tmp_path / "run"
    for step in (5, 20):
        shutil.copytree(weights_dir, workdir / "checkpoints" / str(step))
    newest = jax.tree.map(lambda a: a + 1.0, random_weights)
    shutil.rmtree(workdir / "checkpoints" / "20")
    weights.save_weights(newest, workdir / "checkpoints" / "20")
    (workdir / "checkpoints" / "30.orbax-checkpoint-tmp").mkdir()  # an unfinished save is ignored
    loaded = adain_jax.load_weights(workdir)
    np.testing.assert_array_equal(np.asarray(loaded["decoder"]["conv1_1"]["bias"]),
                                  np.asarray(newest["decoder"]["conv1_1"]["bias"]))


def test_a_failed_save_leaves_nothing_behind_and_keeps_the_old_directory(random_weights, weights_dir, tmp_path, monkeypatch):
    target = tmp_path / "w"
    shutil.copytree(weights_dir, target)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(weights, "_checkpointer", broken)
    with pytest.raises(OSError):
        weights.save_weights(random_weights, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    assert (target / weights.MANIFEST).exists()


@pytest.mark.parametrize("make,fragment", [
    (lambda p: p / "absent", "no such weights directory"),
    (lambda p: p, "holds neither converted weights"),
])
def test_missing_weights_say_what_to_do(tmp_path, make, fragment):
    with pytest.raises(FileNotFoundError, match=fragment):
        adain_jax.load_weights(make(tmp_path))


def test_a_damaged_checkpoint_is_reported_with_its_path(weights_dir, tmp_path):
    broken = tmp_path / "w"
    shutil.copytree(weights_dir, broken)
    for f in (broken / "weights").rglob("*"):
        if f.is_file() and f.name != "_CHECKPOINT_METADATA":
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=str(broken / "weights")):
        adain_jax.load_weights(broken)
