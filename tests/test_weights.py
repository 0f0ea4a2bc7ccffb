"""Weights directories: official-layout mapping checks, atomic Orbax save, and every way to load."""

import shutil

import jax
import numpy as np
import pytest

import adain_jax
from adain_jax import architecture, weights
from adain_jax.pth_reader import WeightFileError


def official_numpy_state_dicts(seed=0):
    rng = np.random.default_rng(seed)

    def sd(specs):
        out = {}
        for s in specs:
            out[f"{s.torch_index}.weight"] = rng.normal(size=s.torch_weight_shape).astype(np.float32)
            out[f"{s.torch_index}.bias"] = rng.normal(size=(s.out_channels,)).astype(np.float32)
        return out

    return sd(architecture.ENCODER + architecture.VGG_TAIL), sd(architecture.DECODER)


def test_weights_from_torch_maps_indices_to_names_and_oihw_to_hwio():
    vgg, dec = official_numpy_state_dicts()
    w = weights.weights_from_torch("v.pth", vgg, "d.pth", dec)
    np.testing.assert_array_equal(w["encoder"]["conv4_1"]["kernel"], vgg["29.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(w["decoder"]["conv1_1"]["bias"], dec["28.bias"])
    assert set(w["encoder"]) == {s.name for s in architecture.ENCODER}  # tail dropped by default
    full = weights.weights_from_torch("v.pth", vgg, "d.pth", dec, full_vgg=True)
    assert "conv5_4" in full["encoder"]


@pytest.mark.parametrize("mutate,fragment,tensor", [
    (lambda v, d: v.pop("16.bias"), "missing", "16.bias"),
    (lambda v, d: v.update({"19.weight": v["19.weight"].astype(np.float16)}), "dtype float16", "19.weight"),
    (lambda v, d: v.update({"2.weight": v["2.weight"][:32]}), "shape (32, 3, 3, 3), expected (64, 3, 3, 3)", "2.weight"),
    (lambda v, d: v.update({"99.weight": v["2.weight"]}), "not in the official layout", "99.weight"),
    (lambda v, d: v["51.weight"].__setitem__((0, 0, 0, 0), np.inf), "NaN or infinite", "51.weight"),
    (lambda v, d: d.update({"28.weight": d["28.weight"].astype(np.float64)}), "dtype float64", "28.weight"),
])
def test_layout_problems_name_the_file_and_the_tensor(mutate, fragment, tensor):
    vgg, dec = official_numpy_state_dicts()
    mutate(vgg, dec)
    with pytest.raises(WeightFileError) as excinfo:
        weights.weights_from_torch("v.pth", vgg, "d.pth", dec)
    msg = str(excinfo.value)
    assert fragment in msg and tensor in msg and ("v.pth" in msg or "d.pth" in msg)


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
