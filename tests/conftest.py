"""Shared fixtures: random weights in the library's layout and small generated images.

pytest puts the repository root and ``tests/`` on the path (``pythonpath`` in pyproject.toml), so
``convert``, ``train`` and ``benchmarks`` resolve as they do for ``python -m``, and the shared test
helpers (``torch_reference``, ``training_helpers``) import by name.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

# The CLI turns on JAX's persistent compilation cache; tests stay hermetic and leave ~/.cache alone
# (tests/test_compilation_cache.py covers the cache itself).
os.environ.setdefault("ADAIN_JAX_CACHE_DIR", "off")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def random_weights():
    import jax

    import adain_jax

    return adain_jax.init_weights(jax.random.key(0))


@pytest.fixture(scope="session")
def weights_dir(random_weights, tmp_path_factory):
    import adain_jax

    return adain_jax.save_weights(random_weights, tmp_path_factory.mktemp("w") / "flax", {"note": "random"})


def write_image(path, height, width, seed=0, mode="RGB"):
    """A smooth random image (so resizing and stylizing have structure to act on)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path)
    return path


@pytest.fixture
def image_factory(tmp_path):
    def make(name, height=40, width=48, seed=0, mode="RGB"):
        return write_image(tmp_path / name, height, width, seed, mode)

    return make
