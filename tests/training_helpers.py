"""Shared pieces of the training tests: small data folders, a random VGG in the official layout,
a tiny config, and running `python -m train.main` in a subprocess that can never hang CI."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from helpers import ROOT, write_image

SUBPROCESS_TIMEOUT = 300  # seconds, for any single training subprocess


def make_image_folder(root, n, seed=0) -> pathlib.Path:
    sizes = ((40, 48), (36, 44), (48, 40), (33, 60))
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        write_image(pathlib.Path(root) / f"img_{i:02d}.jpg", h, w, seed=seed * 100 + i)
    return pathlib.Path(root)


def official_random_weights(seed=0) -> dict:
    """torch_reference's seeded random weights in the official layout, mapped like the converter does."""
    try:
        import torch_reference as ref
    except ImportError:
        from tests import torch_reference as ref
    from convert.torch_layout import weights_from_torch

    vgg_sd, dec_sd = ref.official_state_dicts(seed)
    return weights_from_torch("vgg_normalised.pth", {k: v.numpy() for k, v in vgg_sd.items()},
                              "decoder.pth", {k: v.numpy() for k, v in dec_sd.items()})


def write_vgg_dir(directory, seed=0) -> pathlib.Path:
    import adain_jax

    return adain_jax.save_weights(official_random_weights(seed), directory, {"note": "random, official layout"})


def tiny_config(*, content, style, vgg, tfds_data_dir, **overrides):
    from train.configs import tiny

    config = tiny.get_config()
    config.update(dict(content=str(content), style=str(style), vgg=str(vgg), tfds_data_dir=str(tfds_data_dir),
                       image_size=32, crop_size=32, batch_size=2, num_steps=4, log_every=1, checkpoint_every=2,
                       sample_every=0, num_workers=1, prefetch=1, progress_bar=False))
    config.update(overrides)
    return config


def main_command(workdir, **overrides) -> list[str]:
    args = [sys.executable, "-m", "train.main", f"--workdir={workdir}",
            f"--config={ROOT / 'train' / 'configs' / 'tiny.py'}"]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(extra)
    return env


def run_main(workdir, timeout=SUBPROCESS_TIMEOUT, **overrides) -> subprocess.CompletedProcess:
    return subprocess.run(main_command(workdir, **overrides), cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)


def tree_max_rel_diff(a, b) -> float:
    import jax

    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        worst = max(worst, float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)))
    return worst


def wait_until(proc, predicate, timeout) -> bool:
    """Poll ``predicate`` until it holds (True), ``proc`` exits or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def kill_after_checkpoint(command: list[str], workdir, step: int) -> None:
    """Run a training ``command`` from the repository root and SIGKILL it once checkpoint ``step`` is
    complete and at least one later step has been logged: a kill between two checkpoints."""
    from train import metric_writer

    workdir = pathlib.Path(workdir)
    proc = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_until(proc, lambda: (workdir / "checkpoints" / str(step)).is_dir() and any(
            r["step"] > step for r in metric_writer.read_metrics(workdir)), SUBPROCESS_TIMEOUT)
        assert ready, (f"training did not get past step {step}: "
                       f"{proc.stderr.read()[-3000:] if proc.poll() is not None else ''}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
