"""`adain-jax demo`: runs on random weights when none are found, says so, and writes the sheet."""

import argparse
import pathlib

import numpy as np
import pytest
from PIL import Image

import adain_jax
from adain_jax import cli
from adain_jax.cli import demo

from helpers import SHARED, write_image


def make_image_folder(root):
    for i, name in enumerate(("c1.png", "c2.png")):
        write_image(root / "content" / name, 48, 64, seed=i)
    for i, name in enumerate(("s1.png", "s2.png")):
        write_image(root / "style" / name, 40, 40, seed=10 + i)
    return root


def test_generic_examples_cover_several_controls(tmp_path):
    examples = demo.choose_examples(make_image_folder(tmp_path / "images"))
    assert any(e.alpha < 1 for e in examples)
    assert any(e.preserve_color for e in examples)
    assert any(e.style_weights for e in examples)


def test_without_options_the_demo_uses_the_packaged_examples_and_finds_every_file(monkeypatch):
    """A plain clone has nothing beside it: the default example set is inside the package."""
    monkeypatch.delenv("ADAIN_JAX_EXAMPLES", raising=False)
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    images = parser.parse_args([]).images
    package = pathlib.Path(adain_jax.__file__).resolve().parent
    assert images.resolve().is_relative_to(package)
    examples = demo.choose_examples(images)
    assert [e.name for e in examples][:6] == [
        "astronaut_hubble", "chelsea_immunohistochemistry", "coffee_retina_alpha0.5", "rocket_hubble_preserve",
        "chelsea_interpolation", "astronaut_mask"]
    for e in examples:
        assert (images / "content" / e.content).is_file()
        assert all((images / "style" / s).is_file() for s in e.styles)
        assert e.mask is None or (images / "mask" / e.mask).is_file()
    # every control of the paper is shown
    assert {e.label for e in examples} >= {"alpha 0.5", "preserve colour", "spatial mask"}
    assert any(e.style_weights for e in examples)


def test_the_examples_folder_and_the_weights_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAIN_JAX_EXAMPLES", str(tmp_path / "mine"))
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", str(tmp_path / "w"))
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    assert args.images == tmp_path / "mine" and args.weights == tmp_path / "w"


def test_curated_examples_are_used_when_the_reference_images_are_there():
    reference = SHARED / "images"
    if not (reference / "content" / "cornell.jpg").exists():
        pytest.skip("the curated examples need ../shared/images beside this checkout")
    names = {e.name for e in demo.choose_examples(reference)}
    assert {"cornell_matisse", "blonde_girl_mask", "chicago_interpolation"} <= names


def test_demo_without_weights_runs_on_random_weights_and_labels_the_sheet(tmp_path, capsys):
    images = make_image_folder(tmp_path / "images")
    out = tmp_path / "outputs"
    status = cli.main(["demo", "--images", str(images), "--weights", str(tmp_path / "none"),
                       "--output", str(out), "--size", "32"])
    captured = capsys.readouterr()
    assert status == 0
    assert "RANDOMLY INITIALISED" in captured.err and "random weights" in captured.out
    sheet = np.asarray(Image.open(out / "contact_sheet.jpg"))
    examples = demo.choose_examples(images)
    assert sheet.shape[0] > 192 * len(examples)  # one row per example plus header and labels
    assert sorted(p.stem for p in out.glob("*.jpg") if p.stem != "contact_sheet") == sorted(e.name for e in examples)


def test_demo_with_converted_weights_uses_them(weights_dir, tmp_path, capsys):
    images = make_image_folder(tmp_path / "images")
    assert cli.main(["demo", "--images", str(images), "--weights", str(weights_dir), "--output",
                     str(tmp_path / "o"), "--size", "32"]) == 0
    captured = capsys.readouterr()
    assert "RANDOMLY" not in captured.err and f"weights from {weights_dir}" in captured.out


def test_demo_reports_a_missing_image_folder(tmp_path, capsys):
    assert cli.main(["demo", "--images", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "content" in capsys.readouterr().err


def test_demo_runs_on_the_packaged_examples_alone(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ADAIN_JAX_EXAMPLES", raising=False)
    monkeypatch.delenv("ADAIN_JAX_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)  # no weights/flax here: random weights, said so
    assert cli.main(["demo", "--output", "out", "--size", "32"]) == 0
    assert "RANDOMLY INITIALISED" in capsys.readouterr().err
    written = sorted(p.stem for p in (tmp_path / "out").glob("*.jpg"))
    assert written == sorted(["astronaut_hubble", "chelsea_immunohistochemistry", "coffee_retina_alpha0.5",
                              "rocket_hubble_preserve", "chelsea_interpolation", "astronaut_mask", "contact_sheet"])
