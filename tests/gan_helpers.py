"""Shared pieces of the StyleGAN training tests: a tiny config (8x8, few features) that compiles fast."""

from __future__ import annotations

import sys

from helpers import ROOT

# Overrides of train/configs/stylegan_digits.py: the smallest networks the library allows.
TINY = dict(resolution=8, latent_dim=8, max_features=8, min_features=8, d_max_features=8, d_min_features=8,
            mapping_layers=2, batch_size=4, mbstd_group=2, r1_every=1, log_every=1, checkpoint_every=4,
            sample_every=0, num_samples=2, sample_size=16, num_workers=1, prefetch=1, progress_bar=False,
            fd_samples=64, fd_classifier_steps=30)


def tiny_config(**overrides):
    from train.configs import stylegan_digits

    config = stylegan_digits.get_config()
    config.update({**TINY, **overrides})
    return config


def gan_command(module: str, workdir, **overrides) -> list[str]:
    args = [sys.executable, "-m", module, f"--workdir={workdir}",
            f"--config={ROOT / 'train' / 'configs' / 'stylegan_digits.py'}"]
    return args + [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()]
