"""`adain-jax demo`: runs the model --weights resolves to (by default the packaged one) and names it;
random weights only when asked for by name, labelled RANDOM; unusable weights are one error line."""

import argparse
import pathlib

import numpy as np
import pytest
from PIL import Image

import adain_jax
from adain_jax import cli, pretrained
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


@pytest.fixture
def sheet_headers(monkeypatch):
    """The headers of the contact sheets the demo draws (the sheet's picture is not read back as text)."""
    from adain_jax.io import sheets

    headers = []
    real = sheets.contact_sheet
    monkeypatch.setattr(sheets, "contact_sheet", lambda *a, **k: headers.append(k.get("header")) or real(*a, **k))
    return headers


def test_demo_with_random_weights_asked_for_labels_them_everywhere(tmp_path, capsys, sheet_headers):
    images = make_image_folder(tmp_path / "images")
    out = tmp_path / "outputs"
    status = cli.main(["demo", "--images", str(images), "--weights", "random", "--output", str(out), "--size", "32"])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.err.splitlines()[0].startswith("model: RANDOM WEIGHTS")
    assert "RANDOM WEIGHTS" in captured.out and "NOTE: these used RANDOM weights" in captured.out
    assert len(sheet_headers) == 1 and "RANDOM WEIGHTS" in sheet_headers[0]
    sheet = np.asarray(Image.open(out / "contact_sheet.jpg"))
    examples = demo.choose_examples(images)
    assert sheet.shape[0] > 192 * len(examples)  # one row per example plus header and labels
    assert sorted(p.stem for p in out.glob("*.jpg") if p.stem != "contact_sheet") == sorted(e.name for e in examples)


def test_demo_with_converted_weights_uses_them(weights_dir, tmp_path, capsys, sheet_headers):
    images = make_image_folder(tmp_path / "images")
    assert cli.main(["demo", "--images", str(images), "--weights", str(weights_dir), "--output",
                     str(tmp_path / "o"), "--size", "32"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == f"model: weights from {weights_dir} (random)"  # the fixture's note
    assert "RANDOM" not in captured.err + captured.out and "NOTE" not in captured.out
    assert f"weights from {weights_dir}" in captured.out and f"weights from {weights_dir}" in sheet_headers[0]


def test_demo_with_missing_weights_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    images = make_image_folder(tmp_path / "images")
    out = tmp_path / "outputs"
    assert cli.main(["demo", "--images", str(images), "--weights", str(tmp_path / "none"), "--output", str(out),
                     "--size", "32"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: {tmp_path / 'none'}: no such weights directory")
    assert "RANDOM" not in captured.err + captured.out
    assert not out.exists()


def test_demo_reports_a_missing_image_folder(tmp_path, capsys):
    assert cli.main(["demo", "--images", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "content" in capsys.readouterr().err


def test_demo_runs_on_the_packaged_examples_and_the_packaged_model_alone(monkeypatch, tmp_path, capsys,
                                                                         sheet_headers):
    """A plain clone or install: nothing beside it, no setting; the packaged model runs and is named."""
    if not pretrained.available():
        pytest.skip("the packaged model (adain_jax/pretrained/weights.npz) is not in this checkout")
    monkeypatch.delenv("ADAIN_JAX_EXAMPLES", raising=False)
    monkeypatch.delenv("ADAIN_JAX_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)  # no weights/flax here
    assert cli.main(["demo", "--output", "out", "--size", "32"]) == 0
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert first.startswith("model: the packaged model adain-jax-open"), first
    assert "RANDOM" not in captured.err + captured.out + sheet_headers[0]
    assert "adain-jax-open" in captured.out and "adain-jax-open" in sheet_headers[0]
    written = sorted(p.stem for p in (tmp_path / "out").glob("*.jpg"))
    assert written == sorted(["astronaut_hubble", "chelsea_immunohistochemistry", "coffee_retina_alpha0.5",
                              "rocket_hubble_preserve", "chelsea_interpolation", "astronaut_mask", "contact_sheet"])
