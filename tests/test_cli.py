"""The `adain-jax` command: outputs and names, every control, skipping bad files, exit codes, help."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import adain_jax
from adain_jax import cli, transfer
from adain_jax.io import images as image_io

from helpers import write_image


@pytest.fixture
def folders(tmp_path):
    content = tmp_path / "content"
    style = tmp_path / "style"
    write_image(content / "a.png", 40, 48, seed=1)
    write_image(content / "b.jpg", 40, 48, seed=2)
    write_image(style / "s1.png", 32, 32, seed=3)
    write_image(style / "s2.png", 32, 32, seed=4)
    return content, style


def run(weights_dir, *args):
    return cli.main(["stylize", "--weights", str(weights_dir), "--content-size", "0", "--style-size", "0", *map(str, args)])


def test_directories_give_every_content_x_style_pair_and_encode_each_style_once(weights_dir, folders, tmp_path, monkeypatch):
    content, style = folders
    calls = []
    real = transfer.style_moments
    monkeypatch.setattr(transfer, "style_moments", lambda w, s, **kw: calls.append(s.shape) or real(w, s, **kw))
    assert run(weights_dir, "--content", content, "--style", style, "--output", tmp_path / "out", "--ext", "png") == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_stylized_s1.png", "a_stylized_s2.png", "b_stylized_s1.png", "b_stylized_s2.png"]
    assert len(calls) == 2
    assert Image.open(tmp_path / "out" / "a_stylized_s1.png").size == (48, 40)


def test_cli_output_equals_the_library_call(weights_dir, folders, tmp_path):
    content, style = folders
    assert run(weights_dir, "--content", content / "a.png", "--style", style / "s1.png", "--alpha", "0.6",
               "--output", tmp_path / "out", "--ext", "png") == 0
    weights = adain_jax.load_weights(weights_dir)
    expected = adain_jax.stylize(weights, image_io.load_image(content / "a.png")[None],
                                 image_io.load_image(style / "s1.png")[None], alpha=0.6)
    written = np.asarray(Image.open(tmp_path / "out" / "a_stylized_s1.png"))
    np.testing.assert_array_equal(written, image_io.to_uint8(np.asarray(expected[0])))


def test_interpolation_mask_and_preserve_color_write_the_expected_files(weights_dir, folders, tmp_path):
    content, style = folders
    styles = f"{style / 's1.png'},{style / 's2.png'}"
    out = tmp_path / "out"
    assert run(weights_dir, "--content", content / "a.png", "--style", styles, "--style-weights", "0.3,0.7",
               "--output", out) == 0
    mask = np.zeros((40, 48), np.uint8)
    mask[:, :24] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert run(weights_dir, "--content", content / "a.png", "--style", styles, "--mask", tmp_path / "mask.png",
               "--output", out) == 0
    assert run(weights_dir, "--content", content / "a.png", "--style", style / "s2.png", "--preserve-color",
               "--output", out, "--ext", "png") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_interpolation.jpg", "a_stylized_s1_s2.jpg", "a_stylized_s2.png"]


def test_a_bad_file_is_reported_and_skipped_and_the_exit_status_is_1(weights_dir, folders, tmp_path, capsys):
    content, style = folders
    (content / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    status = run(weights_dir, "--content", content, "--style", style / "s1.png", "--output", tmp_path / "out")
    captured = capsys.readouterr()
    assert status == 1
    assert "broken.jpg" in captured.err and "1 failed" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_stylized_s1.jpg", "b_stylized_s1.jpg"]


@pytest.mark.parametrize("extra,fragment", [
    (["--style-weights", "1,2,3"], "3 values for 2 styles"),
    (["--style-weights", "1,1", "--mask", "m.png"], "not both"),
    (["--mask", "m.png", "--crop", "--content-size", "64", "--style-size", "64"], "--crop"),
])
def test_inconsistent_arguments_fail_before_any_work(weights_dir, folders, tmp_path, capsys, extra, fragment):
    content, style = folders
    status = run(weights_dir, "--content", content, "--style", f"{style / 's1.png'},{style / 's2.png'}",
                 "--output", tmp_path / "out", *extra)
    assert status == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_weights_are_explained(folders, tmp_path, capsys):
    content, style = folders
    assert run(tmp_path / "nowhere", "--content", content, "--style", style, "--output", tmp_path / "out") == 2
    assert "convert.vgg_to_flax" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--alpha", "1.5"], ["--style-weights", "a,b"], ["--content-size", "-1"]])
def test_argument_parsing_rejects_bad_values_with_exit_2(bad, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["stylize", "--content", "c.jpg", "--style", "s.jpg", *bad])
    assert excinfo.value.code == 2


def test_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "adain_jax.cli", "stylize", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=pathlib.Path(__file__).resolve().parents[1])
    assert proc.returncode == 0
    for option in ("--content", "--style", "--alpha", "--style-weights", "--preserve-color", "--mask",
                   "--content-size", "--style-size", "--crop", "--output", "--ext", "--weights"):
        assert option in proc.stdout


def test_parsing_a_command_line_does_not_import_jax():
    code = ("import sys\nfrom adain_jax.cli import build_parser\n"
            "build_parser().parse_args(['stylize', '--content', 'c.jpg', '--style', 's.jpg', '--precision', 'bf16'])\n"
            "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_executable_exits_with_the_status_after_atexit_handlers_and_flushed_output(weights_dir, tmp_path):
    # `cli.console` ends the process without the interpreter's teardown: what `main` printed, the
    # atexit handlers and the exit status must all still be there.
    code = ("import atexit, sys\natexit.register(lambda: print('atexit ran', flush=False))\n"
            "from adain_jax.cli import console\nconsole()")
    root = pathlib.Path(__file__).resolve().parents[1]
    ok = subprocess.run([sys.executable, "-c", code, "info", "--weights", str(weights_dir)], capture_output=True,
                        text=True, timeout=300, cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert "backend:" in ok.stdout and ok.stdout.rstrip().endswith("atexit ran")
    bad = subprocess.run([sys.executable, "-c", code, "stylize", "--content", "c.jpg"], capture_output=True,
                         text=True, timeout=300, cwd=root)
    assert bad.returncode == 2 and "the following arguments are required: --style" in bad.stderr
    missing = subprocess.run([sys.executable, "-c", code, "stylize", "--content", str(tmp_path / "none.jpg"),
                              "--style", str(tmp_path / "none.jpg"), "--weights", str(weights_dir)],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert missing.returncode == 1 and "none.jpg: file not found" in missing.stderr
    assert missing.stdout.endswith("atexit ran\n")
