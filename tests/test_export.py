"""train.export: a checkpoint's weights -> a standalone weights directory (the converter's layout)."""

from __future__ import annotations

import json

import jax
import numpy as np

import adain_jax
from train import checkpointing, export
from train.train import TrainState


def _workdir(tmp_path, random_weights):
    ckpt = checkpointing.Checkpointer(tmp_path / "w", max_to_keep=None)
    for step in (5, 10):
        weights = jax.tree.map(lambda x: np.asarray(x) + step, random_weights)
        state = TrainState(step=np.int32(step), params=weights["decoder"], encoder=weights["encoder"],
                           opt_state={"count": np.int32(step)})
        ckpt.save(step, state, meta={"data_position": step * 8, "config": {"num_steps": step}})
    ckpt.close()
    return tmp_path / "w"


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_exports_latest_or_chosen_step(tmp_path, random_weights):
    workdir = _workdir(tmp_path, random_weights)
    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "latest")]) == 0
    assert _same(adain_jax.load_weights(tmp_path / "latest"), adain_jax.load_weights(workdir))
    manifest = json.loads((tmp_path / "latest" / "manifest.json").read_text())
    assert manifest["step"] == 10 and manifest["config"] == {"num_steps": 10}
    export.export(workdir, tmp_path / "five", step=5)
    expected = jax.tree.map(lambda x: np.asarray(x) + 5, random_weights)
    assert _same(adain_jax.load_weights(tmp_path / "five"), expected)
    manifest = json.loads((tmp_path / "five" / "manifest.json").read_text())
    assert manifest["step"] == 5 and manifest["config"] == {"num_steps": 5}  # that step's own meta


def test_missing_step_or_workdir_is_exit_status_2(tmp_path, random_weights, capsys):
    workdir = _workdir(tmp_path, random_weights)
    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "x"), "--step", "3"]) == 2
    assert "no such checkpoint (steps: 5, 10)" in capsys.readouterr().err
    assert export.main(["--workdir", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 2
    assert f"{tmp_path / 'nothing'}: no training checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_float16_export_halves_the_file_and_loads_as_float32(tmp_path, random_weights):
    workdir = _workdir(tmp_path, random_weights)
    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "f32")]) == 0
    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "f16"), "--dtype", "float16"]) == 0
    size32 = (tmp_path / "f32" / "weights.npz").stat().st_size
    size16 = (tmp_path / "f16" / "weights.npz").stat().st_size
    assert 0.45 < size16 / size32 < 0.55
    loaded = adain_jax.load_weights(tmp_path / "f16")
    assert {np.asarray(x).dtype for x in jax.tree.leaves(loaded)} == {np.dtype(np.float32)}
    expected = jax.tree.map(lambda x: (np.asarray(x) + 10).astype(np.float16).astype(np.float32), random_weights)
    assert _same(loaded, expected)
    assert json.loads((tmp_path / "f16" / "manifest.json").read_text())["dtype"] == "float16"


def test_average_of_the_last_checkpoints_decoders_keeps_the_steps_encoder(tmp_path, random_weights):
    workdir = _workdir(tmp_path, random_weights)  # checkpoints 5 and 10: the weights + 5 and + 10
    assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "avg"), "--average", "2"]) == 0
    loaded = adain_jax.load_weights(tmp_path / "avg")
    for name, layer in random_weights["decoder"].items():
        for key, value in layer.items():
            # The two stored float32 arrays' mean in float64, rounded once to float32.
            five, ten = (np.asarray(value) + 5).astype(np.float64), (np.asarray(value) + 10).astype(np.float64)
            assert np.array_equal(loaded["decoder"][name][key], ((five + ten) / 2).astype(np.float32))
            assert not np.array_equal(loaded["decoder"][name][key], np.asarray(value) + 10)
    assert _same(loaded["encoder"], jax.tree.map(lambda x: np.asarray(x) + 10, random_weights["encoder"]))
    manifest = json.loads((tmp_path / "avg" / "manifest.json").read_text())
    assert manifest["step"] == 10 and manifest["averaged_steps"] == [5, 10]
    # Up to step 5 there is one checkpoint; --average 1 is the step itself, with no record of averaging.
    export.export(workdir, tmp_path / "one", step=5, average=1)
    assert "averaged_steps" not in json.loads((tmp_path / "one" / "manifest.json").read_text())


def test_average_needs_that_many_checkpoints(tmp_path, random_weights, capsys):
    workdir = _workdir(tmp_path, random_weights)
    for argv, message in (
            (["--average", "3"], "--average 3 needs 3 checkpoints up to step 10, the workdir has 2 (5, 10)"),
            (["--average", "2", "--step", "5"], "--average 2 needs 2 checkpoints up to step 5, the workdir has 1 (5)"),
            (["--average", "0"], "--average must be at least 1, got 0")):
        assert export.main(["--workdir", str(workdir), "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"error: {message}", err
    assert not (tmp_path / "x").exists()
