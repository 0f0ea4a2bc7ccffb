"""`adain-jax demo`: runs on random weights when none are found, says so, and writes the sheet."""

import numpy as np
import pytest
from PIL import Image

from adain_jax import cli
from adain_jax.cli import demo, options

from conftest import write_image


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


def test_curated_examples_are_used_when_the_reference_images_are_there():
    if not (options.DEFAULT_IMAGES / "content" / "cornell.jpg").exists():
        pytest.skip("the curated examples need ../shared/images beside this checkout")
    names = {e.name for e in demo.choose_examples(options.DEFAULT_IMAGES)}
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
