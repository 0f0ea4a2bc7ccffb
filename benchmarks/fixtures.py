"""Weights and images shared by both sides, as plain numpy (so a child process that measures one
framework need not import the other).

The weights are the parity tests' seeded random weights in the official layout
(`torch_reference.official_state_dicts`); speed does not depend on the values, and the random
ones need no download. Images are `torch_reference.make_images`, smooth random pictures.
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEED = 20170


def _reference():
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import torch_reference

    return torch_reference


def state_dicts(seed: int = SEED) -> tuple[dict, dict]:
    """(vgg, decoder) official-layout state dicts as {key: float32 ndarray}."""
    vgg_sd, dec_sd = _reference().official_state_dicts(seed)
    return ({k: v.numpy() for k, v in vgg_sd.items()}, {k: v.numpy() for k, v in dec_sd.items()})


def images(seed: int, n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) float32 NHWC in [0, 1]."""
    return _reference().make_images(seed, n, size, size)


def save(path, vgg_sd: dict, dec_sd: dict, **arrays) -> None:
    np.savez(path, **{f"vgg/{k}": v for k, v in vgg_sd.items()}, **{f"dec/{k}": v for k, v in dec_sd.items()},
             **{f"img/{k}": v for k, v in arrays.items()})


def load(path) -> tuple[dict, dict, dict]:
    with np.load(path) as f:
        parts = {"vgg": {}, "dec": {}, "img": {}}
        for key in f.files:
            kind, name = key.split("/", 1)
            parts[kind][name] = f[key]
    return parts["vgg"], parts["dec"], parts["img"]


def configure_threads(threads: int | None) -> int:
    """Pin to the first ``threads`` cores (XLA sizes its pool from the affinity mask) before the
    frameworks start; PyTorch is told the same number."""
    cores = sorted(os.sched_getaffinity(0))
    if threads is not None and 0 < threads < len(cores):
        os.sched_setaffinity(0, cores[:threads])
        cores = cores[:threads]
    return len(cores)
