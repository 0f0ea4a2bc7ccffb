"""`python -m docs.figures`: the docs' pictures are made, are images, carry their caption band (grey for
the model a command loads without --weights, amber only where random weights made them: the studies'
random VGG, or random weights asked for by name), and the seam check finds tiled = untiled; the held-out
grid is laid out and credits its images; bad options stop early."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from helpers import ROOT, write_image
from PIL import Image

from adain_jax import pretrained
from adain_jax.io import weights as weights_lib
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


@pytest.fixture
def default_model(monkeypatch):
    """The model the pictures use when nothing is set: the packaged one (unless the checkout has weights/flax)."""
    monkeypatch.delenv("ADAIN_JAX_WEIGHTS", raising=False)
    if not (ROOT / "weights" / "flax").exists() and not pretrained.available():
        pytest.skip("neither weights/flax nor the packaged model (adain_jax/pretrained/weights.npz) is here")
    return weights_lib.describe(figures.default_model())


def test_quick_seams_flicker_heldout_and_augment_are_captioned_images_of_the_default_model(examples, default_model,
                                                                                      tmp_path, capsys):
    out = tmp_path / "images"
    assert figures.main(["--quick", "--only", "seams,flicker,heldout,augment", "--images", str(examples), "--heldout",
                         str(examples), "--output", str(out), "--workdir", str(tmp_path / "work")]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == f"model: {default_model['model']}"
    if not (ROOT / "weights" / "flax").exists():
        assert default_model["kind"] == "packaged" and "adain-jax-open" in printed.splitlines()[0]
    assert "RANDOM" not in printed

    seams, flicker, grid = out / "tiling_seams.png", out / "flicker.png", out / "heldout_grid.png"
    augmented = out / "augment_samples.png"
    for path in (seams, flicker, grid, augmented):
        with Image.open(path) as image:
            assert image.format == "PNG"
        assert_captioned(path, random_weights=False)
    with Image.open(seams) as image:
        assert image.width >= 4 * 160 and image.height < image.width  # four 160 px panels in a row
    with Image.open(flicker) as image:
        assert image.width == 900  # the plot's 9 inches at 100 dpi

    worst = float(re.search(r"max \|tiled - untiled\| = (\S+) \((\d+) windows", printed).group(1))
    windows = int(re.search(r"\((\d+) windows", printed).group(1))
    assert windows > 1 and worst <= 1e-4
    # Four curves, each with a mean warping error.
    assert len(re.findall(r"^flicker: .+: mean warping error \d", printed, re.M)) == 4
    # The grid: five 48 px columns (content and four styles; these examples have two styles), a row of
    # styles, a row per content and four rows of controls.
    assert f"heldout: 2 contents x 2 styles from {examples}" in printed
    with Image.open(grid) as image:
        assert image.width == 5 * 48 + 6 * 4
        assert image.height > (1 + 2 + 4) * 48
    # style_augment: the input and six calls (3 StyleBank, 2 GaussianStyles, 1 InBatch) for each content.
    assert f"augment: 2 contents, a bank of 2 styles from {examples / 'style'}" in printed
    with Image.open(augmented) as image:
        assert image.width == 7 * 48 + 8 * 4
        assert image.height > 2 * 48


def test_random_weights_only_by_name_and_then_on_an_amber_band(examples, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", weights_lib.RANDOM)
    out = tmp_path / "images"
    assert figures.main(["--quick", "--only", "seams", "--images", str(examples), "--output", str(out),
                         "--workdir", str(tmp_path / "work")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("model: RANDOM WEIGHTS")
    assert_captioned(out / "tiling_seams.png", random_weights=True)


def test_the_heldout_caption_credits_each_image_from_the_recipes_manifest(tmp_path):
    """A held-out split whose data manifest the model records is said to be one training never read, and
    each image is credited with its package, licence and copyright (in ASCII, the band's font)."""
    data = tmp_path / "open"
    files = [write_image(data / "heldout" / role / name, 16, 16) for role, name in
             (("content", "pkg__photo.jpg"), ("style", "art__Autumn_contents_images_2560x1600.jpg"))]
    records = [{"path": f"heldout/{f.parent.name}/{f.name}", "split": "heldout", "package": f.name.split("__")[0],
                "licence": "CC0-1.0", "copyright": "(C) 2014 Fabien Ch\u00e9reau"} for f in files]
    manifest = json.dumps({"images": records}).encode()
    (data / "manifest.json").write_bytes(manifest)
    model = tmp_path / "model"
    recorded = {"name": "m", "data": {"manifest_sha256": hashlib.sha256(manifest).hexdigest()}}
    weights_lib.save_weights(weights_lib.load_weights(weights_lib.RANDOM), model, {"packaged": recorded})
    settings = figures.Settings(output=tmp_path, workdir=tmp_path, images=tmp_path, train_images=tmp_path,
                                heldout=data / "heldout", run=None, quick=True, stylegan_steps=1, studies_steps=1,
                                weights=model, model="m", is_random=False)
    text = figures.heldout_source(data / "heldout", files, settings)
    assert "training never reads this split" in text
    assert "photo (pkg, CC0-1.0, (C) 2014 Fabien Chereau)" in text
    assert "Autumn (art, CC0-1.0, (C) 2014 Fabien Chereau)" in text
    (data / "manifest.json").write_bytes(manifest + b" ")  # another data set than the model's
    assert "not one the model's manifest records" in figures.heldout_source(data / "heldout", files, settings)
    assert "packaged with adain-jax" in figures.heldout_source(None, files, settings)


def test_bad_options_stop_before_any_work(tmp_path, capsys, monkeypatch):
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

    # --heldout too; and unusable default weights are one line, not a traceback after other pictures.
    assert figures.main(["--only", "heldout", "--heldout", str(tmp_path / "h"), "--output", str(out)]) == 2
    assert f"error: {tmp_path / 'h' / 'content'}: missing (--heldout needs" in capsys.readouterr().err
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", str(tmp_path / "no-weights"))
    assert figures.main(["--only", "heldout,stylegan", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no usable default weights") and "no-weights" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_quick_demo_stylegan_studies_and_webapp(examples, default_model, tmp_path, capsys):
    """The web app picture fails (RuntimeError, exit 1) if the page names another model or shows the
    RANDOM WEIGHTS banner; the studies run on a random VGG and say so."""
    only = "demo,stylegan,studies,webapp"
    out = tmp_path / "images"
    assert figures.main(["--quick", "--only", only, "--images", str(examples), "--output", str(out),
                         "--workdir", str(tmp_path / "work")]) == 0
    for name in ("stylegan_samples.png", "stylegan_mixing.png", "stylegan_truncation.png"):
        assert_captioned(out / name, random_weights=False)  # a real (if 4-step) training run
    assert_captioned(out / "studies_losses.png", random_weights=True)
    assert_captioned(out / "webapp.png", random_weights=False)
    with Image.open(out / "webapp.png") as image:
        assert image.width == 1280
    assert_captioned(out / "demo.png", random_weights=False)
    with Image.open(out / "demo.png") as image:
        assert image.width == 320
    # A second run reuses the trained runs instead of training again.
    capsys.readouterr()
    assert figures.main(["--quick", "--only", "stylegan", "--output", str(out), "--workdir",
                         str(tmp_path / "work")]) == 0
    assert "stylegan training" not in capsys.readouterr().out


def test_training_picture_shows_the_runs_losses_and_grids_only_when_asked(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    lines = [{"step": s, "loss": 300.0 / s ** 0.5, "content_loss": 11.0, "style_loss": 20.0 / s ** 0.5, "lr": 1e-4,
              "skipped_images": 0} for s in range(25, 401, 25)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for step in (100, 200, 300, 400):
        write_image(run / "samples" / f"step_{step:07d}.jpg", 60, 60, seed=step)
    assert "training" not in figures.parser().parse_args([]).only  # the default set needs no run
    assert figures.main(["--only", "training", "--output", str(tmp_path / "out")]) == 2
    assert "training: --run must name a training workdir" in capsys.readouterr().err
    assert figures.main(["--only", "training", "--run", str(run), "--output", str(tmp_path / "out")]) == 0
    pixels, colour = band(tmp_path / "out" / "packaged_training.png")
    assert colour == figures.PLAIN_BAND
    image = np.asarray(Image.open(tmp_path / "out" / "packaged_training.png").convert("RGB"))
    assert image.shape[1] == 640 + 3 * 360  # the curves (640 x 360 px) and three square grids made 360 px high
