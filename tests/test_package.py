"""train.package: a training checkpoint -> the packaged model's weights directory (float16, with its record)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import adain_jax
from adain_jax.io import weights as weights_lib
from train import checkpointing, package
from train.train import TrainState


@pytest.fixture
def run(tmp_path, random_weights):
    """A workdir with checkpoints 100 and 200 of a run on a Keras-VGG directory, its metrics, and a data set."""
    vgg = tmp_path / "vgg"
    vgg.mkdir()
    (vgg / "manifest.json").write_text(json.dumps({
        "sources": {"vgg": {"name": "vgg19.h5", "md5": "253f8cb515780f3b799900260a226db6", "keras_md5": True,
                            "route": "sdist", "licence": "CC BY 4.0"}},
        "normalisation": {"num_images": 3, "image_files": ["a.jpg", "b.jpg", "c.jpg"], "size": 256}}))
    workdir = tmp_path / "w"
    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=None)
    for step in (100, 200):
        weights = jax.tree.map(lambda x, scale=1 + step / 1000: np.asarray(x) * scale, random_weights)
        state = TrainState(step=np.int32(step), params=weights["decoder"], encoder=weights["encoder"],
                           opt_state={"count": np.int32(step)})
        ckpt.save(step, state, meta={"data_position": step * 8,
                                     "config": {"vgg": str(vgg), "crop_size": 128, "batch_size": 8, "lr": 5e-4}})
    ckpt.close()
    lines = [{"step": s, "loss": 100.0 - s / 10, "content_loss": 10.0, "style_loss": 9.0 - s / 100, "lr": 1e-4,
              "skipped_images": 0} for s in range(25, 201, 25)]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"recipe": "python -m train.debian_data",
                                                    "counts": {"by_split": {"train": 7, "heldout": 2}}}))
    (data / "SOURCES.md").write_text("# Sources\nAttribution: somebody\n")
    return workdir, data, random_weights


def test_packages_a_chosen_step_in_float16_with_its_record(tmp_path, run):
    workdir, data, random_weights = run
    out = tmp_path / "pkg"
    (out).mkdir()
    (out / "__init__.py").write_text("# the package's code stays\n")
    assert package.main(["--workdir", str(workdir), "--step", "100", "--data", str(data), "--output", str(out),
                         "--name", "test-model"]) == 0
    assert (out / "__init__.py").read_text() == "# the package's code stays\n"
    assert sorted(p.name for p in out.iterdir()) == ["SOURCES.md", "__init__.py", "manifest.json", "weights.npz"]
    with np.load(out / "weights.npz") as npz:
        assert {npz[k].dtype for k in npz.files} == {np.dtype(np.float16)}
    expected = jax.tree.map(lambda x: (np.asarray(x) * 1.1).astype(np.float16).astype(np.float32), random_weights)
    loaded = adain_jax.load_weights(out)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected), strict=True))
    record = json.loads((out / "manifest.json").read_text())["packaged"]
    assert record["name"] == "test-model" and record["training"]["step"] == 100
    assert record["vgg"]["md5"] == "253f8cb515780f3b799900260a226db6"
    assert record["normalisation"]["image_files"] == ["a.jpg", "b.jpg", "c.jpg"]
    # Mean of the logged steps 25..100 (the window reaches back 100 steps from the packaged one).
    assert record["training"]["final_losses"] == {"loss": 93.75, "content_loss": 10.0, "style_loss": 8.375}
    assert record["training"]["config"]["crop_size"] == 128
    import hashlib

    assert record["data"]["manifest_sha256"] == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    assert "7 openly licensed" in record["summary"] and "100 steps" in record["summary"]
    info = weights_lib.describe(out)
    assert info["kind"] == "packaged" and "test-model" in info["model"]
    assert (out / "SOURCES.md").read_text() == (data / "SOURCES.md").read_text()


def test_average_packages_the_mean_decoder_and_records_its_steps(tmp_path, run):
    workdir, data, random_weights = run  # checkpoints 100 and 200: the weights x 1.1 and x 1.2
    assert package.main(["--workdir", str(workdir), "--data", str(data), "--output", str(tmp_path / "pkg"),
                         "--average", "2"]) == 0
    loaded = adain_jax.load_weights(tmp_path / "pkg")
    expected = jax.tree.map(lambda x: (np.asarray(x, np.float64) * 1.15).astype(np.float16).astype(np.float32),
                            random_weights["decoder"])
    for got, want in zip(jax.tree.leaves(loaded["decoder"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=2 ** -10, atol=0)  # within float16 rounding of the mean
    training = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["packaged"]["training"]
    assert training["step"] == 200 and training["averaged_steps"] == [100, 200]
    assert package.main(["--workdir", str(workdir), "--data", str(data), "--output", str(tmp_path / "no"),
                         "--step", "100", "--average", "2"]) == 2
    assert not (tmp_path / "no").exists()


def test_latest_step_by_default(tmp_path, run):
    workdir, data, _ = run
    package.package(workdir, None, data, tmp_path / "pkg")
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["packaged"]["training"]["step"] == 200


def test_a_fine_tuned_packaged_model_adds_its_steps_to_the_parents(tmp_path, run):
    """A run whose config.vgg is a packaged model and init_decoder="vgg" (fine-tuning it): the new record
    takes the parent's VGG and normalisation, names the parent, and counts the parent's steps too."""
    workdir, data, random_weights = run
    parent = package.package(workdir, 200, data, tmp_path / "parent", name="parent-v1")
    child = tmp_path / "child"
    ckpt = checkpointing.Checkpointer(child, max_to_keep=None)
    state = TrainState(step=np.int32(50), params=random_weights["decoder"], encoder=random_weights["encoder"],
                       opt_state={"count": np.int32(50)})
    ckpt.save(50, state, meta={"data_position": 400, "config": {"vgg": str(parent), "init_decoder": "vgg",
                                                                "style_weight_warmup": 800}})
    ckpt.close()
    (child / "metrics.jsonl").write_text(json.dumps({"step": 50, "loss": 5.0, "content_loss": 3.0,
                                                     "style_loss": 0.2}) + "\n")
    record = package.record(child, 50, data, "child-v2")
    assert record["training"]["step"] == 50 and record["training"]["total_steps"] == 250
    assert record["training"]["fine_tuned_from"] == {"name": "parent-v1", "total_steps": 200}
    assert record["training"]["config"]["style_weight_warmup"] == 800
    assert "250 steps" in record["summary"]
    assert record["vgg"]["md5"] == "253f8cb515780f3b799900260a226db6"
    assert record["normalisation"]["image_files"] == ["a.jpg", "b.jpg", "c.jpg"]


@pytest.mark.parametrize("damage, expected", [
    ("no_sources", "data: no SOURCES.md"),
    ("no_metrics", "metrics.jsonl has no losses logged in steps 101-200"),
    ("not_keras", "not made by convert.keras_vgg"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, run, capsys, damage, expected):
    workdir, data, _ = run
    if damage == "no_sources":
        (data / "SOURCES.md").unlink()
    elif damage == "no_metrics":
        (workdir / "metrics.jsonl").write_text("")
    else:
        (tmp_path / "vgg" / "manifest.json").write_text("{}")
    assert package.main(["--workdir", str(workdir), "--data", str(data), "--output", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "pkg").exists()
    assert not list(tmp_path.glob(".pkg*"))
