"""adain_jax.io.weights: atomic save (float32, or float16 as the packaged model is stored), every way to
load (random weights only by name), refusals naming the array, and `describe`'s kinds of model."""

import pathlib
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


def write_orbax_item(tree, path):
    import orbax.checkpoint as ocp

    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, jax.tree.map(np.asarray, tree))
    ckptr.wait_until_finished()
    ckptr.close()


def test_load_weights_reads_the_latest_training_checkpoint(random_weights, tmp_path):
    workdir = tmp_path / "run"
    newest = jax.tree.map(lambda a: a + 1.0, random_weights)
    # The weights item of a training checkpoint step, as train/checkpointing.py writes it (Orbax).
    for step, tree in ((5, random_weights), (20, newest)):
        write_orbax_item(tree, workdir / weights.CHECKPOINTS / str(step) / weights.WEIGHTS_ITEM)
    (workdir / "checkpoints" / "30.orbax-checkpoint-tmp").mkdir()  # an unfinished save is ignored
    loaded = adain_jax.load_weights(workdir)
    np.testing.assert_array_equal(np.asarray(loaded["decoder"]["conv1_1"]["bias"]),
                                  np.asarray(newest["decoder"]["conv1_1"]["bias"]))


def test_a_failed_save_leaves_nothing_behind_and_keeps_the_old_directory(random_weights, weights_dir, tmp_path, monkeypatch):
    target = tmp_path / "w"
    shutil.copytree(weights_dir, target)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(weights.np, "savez", broken)
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


def test_a_damaged_weights_file_is_reported_with_its_path(weights_dir, tmp_path):
    broken = tmp_path / "w"
    shutil.copytree(weights_dir, broken)
    data = (broken / weights.WEIGHTS_FILE).read_bytes()
    (broken / weights.WEIGHTS_FILE).write_bytes(data[: len(data) // 2])  # cut short, as by a full disk
    with pytest.raises(ValueError, match=f"{broken / weights.WEIGHTS_FILE}: not a readable adain-jax weights file"):
        adain_jax.load_weights(broken)


def test_a_weights_file_with_a_wrong_array_names_it(random_weights, tmp_path):
    bad = jax.tree.map(np.asarray, random_weights)
    bad["decoder"]["conv1_1"]["kernel"] = bad["decoder"]["conv1_1"]["kernel"][..., :2]
    weights.save_weights(bad, tmp_path / "w")
    with pytest.raises(ValueError, match=r"decoder/conv1_1/kernel has shape \(3, 3, 64, 2\)"):
        adain_jax.load_weights(tmp_path / "w")


def test_format_1_orbax_weights_directories_still_load_and_damage_is_reported(random_weights, tmp_path):
    old = tmp_path / "old"
    write_orbax_item(random_weights, old / weights.WEIGHTS_ITEM)
    loaded = adain_jax.load_weights(old)
    np.testing.assert_array_equal(np.asarray(loaded["encoder"]["conv4_1"]["kernel"]),
                                  np.asarray(random_weights["encoder"]["conv4_1"]["kernel"]))
    for f in (old / weights.WEIGHTS_ITEM).rglob("*"):
        if f.is_file() and f.name != "_CHECKPOINT_METADATA":
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=str(old / weights.WEIGHTS_ITEM)):
        adain_jax.load_weights(old)


def test_a_checkpoints_variant_comes_from_its_meta_config(tmp_path):
    """A training checkpoint of a concat decoder loads with its shapes and its variant, read from the
    ``meta`` item's config (the JSON file Orbax writes there) without importing train/."""
    import json

    from adain_jax.model import variants

    variant = variants.DecoderVariant("concat", "style", "imagenet")
    w = adain_jax.init_weights(1, variant)
    step = tmp_path / "run" / weights.CHECKPOINTS / "3"
    write_orbax_item({"encoder": w["encoder"], "decoder": w["decoder"]}, step / weights.WEIGHTS_ITEM)
    (step / weights.META_ITEM).mkdir()
    config = {"skip": "concat", "skip_source": "style", "input_norm": "imagenet", "statistics": "batch", "lr": 1e-4}
    (step / weights.META_ITEM / weights.META_FILE).write_text(json.dumps({"step": 3, "config": config}))
    loaded = adain_jax.load_weights(tmp_path / "run")
    assert variants.of(loaded) == variant
    assert loaded["decoder"]["conv3_2"]["kernel"].shape == (3, 3, 256, 128)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(w)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_float16_weights_load_as_float32_of_the_rounded_values(random_weights, tmp_path):
    """The packaged model's storage: half the bytes, and exactly the float16-rounded values back, as float32."""
    weights.save_weights(random_weights, tmp_path / "f32")
    weights.save_weights(random_weights, tmp_path / "f16", dtype=np.float16)
    assert weights.read_manifest(tmp_path / "f16")["dtype"] == "float16"
    assert weights.read_manifest(tmp_path / "f32")["dtype"] == "float32"
    with np.load(tmp_path / "f16" / weights.WEIGHTS_FILE) as npz:
        assert {npz[key].dtype for key in npz.files} == {np.dtype(np.float16)}
    size = (tmp_path / "f16" / weights.WEIGHTS_FILE).stat().st_size
    assert size < 0.51 * (tmp_path / "f32" / weights.WEIGHTS_FILE).stat().st_size
    loaded = adain_jax.load_weights(tmp_path / "f16")
    assert jax.tree.structure(loaded) == jax.tree.structure(random_weights)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(random_weights), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b).astype(np.float16).astype(np.float32))


def test_a_nan_in_the_weights_file_is_one_line_naming_the_array(weights_dir, tmp_path):
    broken = tmp_path / "w"
    shutil.copytree(weights_dir, broken)
    with np.load(broken / weights.WEIGHTS_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["decoder/conv2_1/kernel"] = arrays["decoder/conv2_1/kernel"].copy()
    arrays["decoder/conv2_1/kernel"][0, 0, 0, 0] = np.nan
    np.savez(broken / weights.WEIGHTS_FILE, **arrays)
    with pytest.raises(ValueError) as error:
        adain_jax.load_weights(broken)
    message = str(error.value)
    assert "\n" not in message and "decoder/conv2_1/kernel" in message and "NaN" in message
    assert str(broken / weights.WEIGHTS_FILE) in message


def test_random_weights_by_name(random_weights):
    loaded = weights.load_weights(weights.RANDOM)
    assert weights.is_random(weights.RANDOM) and weights.is_random(pathlib.Path("random"))
    assert not weights.is_random(pathlib.Path("weights/random"))
    assert jax.tree.map(np.shape, loaded) == jax.tree.map(np.shape, random_weights)
    assert {np.asarray(a).dtype for a in jax.tree.leaves(loaded)} == {np.dtype(np.float32)}
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(weights.load_weights("random")), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # seeded: the same every time


def test_describe_says_which_kind_of_model_a_directory_holds(random_weights, weights_dir, tmp_path):
    official = {name: {"file": file, "git_blob_id": "0" * 40, "official": True}
                for name, file in (("vgg", "vgg_normalised.pth"), ("decoder", "decoder.pth"))}
    weights.save_weights(random_weights, tmp_path / "official", {"sources": official})
    d = weights.describe(tmp_path / "official")
    assert d["kind"] == "official" and d["official"] and "official AdaIN weights" in d["model"]
    assert d["sources"]["vgg"]["git_blob_id"] == "0" * 40

    half = {**official, "decoder": {**official["decoder"], "official": False}}  # a retrained decoder
    weights.save_weights(random_weights, tmp_path / "mixed", {"sources": half, "note": "fine-tuned"})
    d = weights.describe(tmp_path / "mixed")
    assert d["kind"] == "other" and not d["official"]
    assert d["model"] == f"weights from {(tmp_path / 'mixed').absolute()} (fine-tuned)"

    record = {"name": "adain-jax-open-v9", "summary": "a decoder trained here"}
    weights.save_weights(random_weights, tmp_path / "packaged", {"packaged": record}, dtype=np.float16)
    d = weights.describe(tmp_path / "packaged")
    assert d["kind"] == "packaged" and not d["official"]
    assert d["model"].startswith("the packaged model adain-jax-open-v9 (a decoder trained here;")

    d = weights.describe(weights_dir)
    assert d["kind"] == "other" and d["model"] == f"weights from {weights_dir} (random)"

    d = weights.describe(weights.RANDOM)
    assert d["kind"] == "random" and d["model"].startswith("RANDOM WEIGHTS") and not d["official"]
    with pytest.raises(FileNotFoundError):
        weights.describe(tmp_path / "absent")
