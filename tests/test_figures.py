"""`python -m docs.figures`: the docs' pictures are made, are images, carry their caption band (amber
where random weights made them), and the seam check finds tiled = untiled; bad options stop early."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import write_image
from PIL import Image

from docs import figures


@pytest.fixture
def examples(tmp_path):
    images = tmp_path / "examples"
    write_image(images / "content" / "house.png", 180, 240, seed=1)
    write_image(images / "content" / "street.png", 160, 200, seed=2)
    write_image(images / "style" / "brush.png", 64, 64, seed=3)
    write_image(images / "style" / "waves.png", 64, 80, seed=4)
    return images


def band(path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The caption band at the bottom of a picture (the rows whose left edge has the last row's colour)."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    colour = tuple(int(v) for v in pixels[-1, 0])
    rows = 0
    while rows < pixels.shape[0] and tuple(pixels[-1 - rows, 0]) == colour:
        rows += 1
    return pixels[-rows:], colour


def assert_captioned(path, random_weights: bool):
    strip, colour = band(path)
    assert colour == (figures.RANDOM_BAND if random_weights else figures.PLAIN_BAND), path.name
    assert strip.shape[0] >= figures.BAND_FONT, "the band is too low to hold a line of text"
    # Text: dark pixels on the band, which a blank band of the same colour would not have.
    assert (strip.min(axis=-1) < 80).mean() > 0.01, f"{path.name}: the caption band is blank"


def test_quick_seams_and_flicker_are_captioned_images_and_tiling_matches(examples, tmp_path, capsys):
    out = tmp_path / "images"
    assert figures.main(["--quick", "--only", "seams,flicker", "--images", str(examples), "--output", str(out),
                         "--workdir", str(tmp_path / "work")]) == 0
    printed = capsys.readouterr().out

    seams, flicker = out / "tiling_seams.png", out / "flicker.png"
    for path in (seams, flicker):
        with Image.open(path) as image:
            assert image.format == "PNG"
        assert_captioned(path, random_weights=True)
    with Image.open(seams) as image:
        assert image.width >= 4 * 160 and image.height < image.width  # four 160 px panels in a row
    with Image.open(flicker) as image:
        assert image.width == 900  # the plot's 9 inches at 100 dpi

    worst = float(re.search(r"max \|tiled - untiled\| = (\S+) \((\d+) windows", printed).group(1))
    windows = int(re.search(r"\((\d+) windows", printed).group(1))
    assert windows > 1 and worst <= 1e-4
    # Four curves, each with a mean warping error.
    assert len(re.findall(r"^flicker: .+: mean warping error \d", printed, re.M)) == 4


def test_bad_options_stop_before_any_work(tmp_path, capsys):
    out = tmp_path / "images"
    with pytest.raises(SystemExit) as stop:
        figures.main(["--only", "seams,nope", "--output", str(out)])
    assert stop.value.code == 2
    assert "unknown figure nope" in capsys.readouterr().err

    assert figures.main(["--only", "seams", "--images", str(tmp_path / "nothing"), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in err)
    for folder in ("content", "style"):
        assert f"error: {tmp_path / 'nothing' / folder}: missing (--images needs content/ and style/ subfolders)" in err
    assert not out.exists()

    # The studies train on --train-images, checked too.
    assert figures.main(["--only", "studies", "--images", str(tmp_path), "--train-images", str(tmp_path / "x"),
                         "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'x' / 'style'}: missing (--train-images needs content/ and style/" in err
    assert not out.exists()


@pytest.mark.slow
def test_quick_demo_stylegan_studies_and_webapp(examples, tmp_path, capsys):
    only = "demo,stylegan,studies,webapp"
    out = tmp_path / "images"
    assert figures.main(["--quick", "--only", only, "--images", str(examples), "--output", str(out),
                         "--workdir", str(tmp_path / "work")]) == 0
    for name in ("stylegan_samples.png", "stylegan_mixing.png", "stylegan_truncation.png"):
        assert_captioned(out / name, random_weights=False)  # a real (if 4-step) training run
    assert_captioned(out / "studies_losses.png", random_weights=True)
    assert_captioned(out / "webapp.png", random_weights=True)
    with Image.open(out / "webapp.png") as image:
        assert image.width == 1280
    assert_captioned(out / "demo.png", random_weights=True)
    with Image.open(out / "demo.png") as image:
        assert image.width == 320
    # A second run reuses the trained runs instead of training again.
    capsys.readouterr()
    assert figures.main(["--quick", "--only", "stylegan", "--output", str(out), "--workdir",
                         str(tmp_path / "work")]) == 0
    assert "stylegan training" not in capsys.readouterr().out
