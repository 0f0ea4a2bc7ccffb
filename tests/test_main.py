"""train.main: the command line (flags, config overrides, one-line errors and exit statuses, the XLA:CPU setting)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from helpers import ROOT
from training_helpers import SUBPROCESS_TIMEOUT, main_command, make_image_folder, run_main, subprocess_env


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


def test_training_runs_from_any_folder_on_the_packaged_examples_with_the_fast_xla_cpu_setting(tmp_path, weights_dir):
    """`python -m train.main` runs from outside the checkout (as installed, no PYTHONPATH), the tiny config
    reads the example images packaged with adain-jax, and adain_jax's XLA:CPU flag is set before JAX
    starts and reported (config.json, log)."""
    import adain_jax
    from adain_jax import xla_flags

    flag = " ".join(f"{name}={value}" for name, value in xla_flags.FLAGS)
    workdir = tmp_path / "w"
    command = main_command(workdir, vgg=weights_dir, tfds_data_dir=tmp_path / "tfds",
                           image_size=32, crop_size=32, batch_size=1, num_steps=1, log_every=1, checkpoint_every=1,
                           sample_every=0, num_workers=1, prefetch=1, progress_bar=False)
    env = subprocess_env()
    env.pop("PYTHONPATH")  # the installed checkout, as a user has it
    env.pop("ADAIN_JAX_EXAMPLES", None)
    env.pop("XLA_FLAGS", None)  # as a user starts it (this process's import of adain_jax set the flag here)
    env.pop(xla_flags.OPT_OUT_ENV, None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads((workdir / "config.json").read_text())
    packaged = pathlib.Path(adain_jax.__file__).parent / "examples"
    assert pathlib.Path(written["config"]["content"]) == packaged / "content", written.get("config")
    setting = written["xla_cpu"]
    assert setting == {"adain_jax_flags": "applied", "XLA_FLAGS": flag}
    assert f"XLA:CPU convolution setting: applied (XLA_FLAGS={flag!r})" in proc.stderr

    # The opt-out, on the same (finished) workdir: reported before anything is compiled.
    env[xla_flags.OPT_OUT_ENV] = "0"
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "XLA:CPU convolution setting: disabled (XLA_FLAGS='')" in proc.stderr
    assert "nothing to do" in proc.stderr


def test_config_model_picks_the_run(monkeypatch, tmp_path):
    """config.model: absent or "adain" -> train.train, "stylegan" -> train.gan (whose own run test_gan covers)."""
    from gan_helpers import gan_command
    from train import gan, main, train
    from train.configs import stylegan_digits, tiny

    called = []
    monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: called.append("adain"))
    monkeypatch.setattr(gan, "train_and_evaluate", lambda config, workdir: called.append("stylegan"))
    main.run_training(tiny.get_config(), tmp_path)
    main.run_training(stylegan_digits.get_config(), tmp_path)
    assert called == ["adain", "stylegan"]

    proc = subprocess.run(gan_command("train.main", tmp_path / "w", model="nope"), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "error: config.model must be one of adain, stylegan, got 'nope'"
