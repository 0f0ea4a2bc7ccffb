"""train.main: the command line (flags, config overrides, one-line errors and exit statuses)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from training_helpers import make_image_folder, run_main, subprocess_env


def test_missing_vgg_is_one_error_line_and_exit_status_2(tmp_path):
    content = make_image_folder(tmp_path / "content", 2)
    missing = tmp_path / "no_vgg_here"
    proc = run_main(tmp_path / "w", timeout=120, content=content, style=content, vgg=missing,
                    tfds_data_dir=tmp_path / "tfds")
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(missing) in last
    assert "Traceback" not in proc.stderr


def test_missing_data_folder_is_one_error_line(tmp_path, weights_dir):
    missing = tmp_path / "no_images"
    proc = run_main(tmp_path / "w", timeout=120, content=missing, style=missing, vgg=weights_dir,
                    tfds_data_dir=tmp_path / "tfds")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == f"error: {missing}: no such folder"


def test_flags_are_checked(tmp_path):
    base = [sys.executable, "-m", "train.main"]
    for args, needle in ((base, "--workdir"),
                         (base + [f"--workdir={tmp_path}", "extra"], "Too many command-line arguments"),
                         (base + [f"--workdir={tmp_path}", "--config.no_such_key=1"], "no_such_key")):
        proc = subprocess.run(args, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and needle in proc.stderr, proc.stderr[-2000:]
