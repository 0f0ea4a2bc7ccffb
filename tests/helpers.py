"""Shared test helpers, imported by name (``from helpers import write_image``): repository paths and
generated images. Fixtures live in conftest.py; pytest advises against importing from conftest.

pytest puts ``tests/`` on the path (``pythonpath`` in pyproject.toml), so this module, like
``torch_reference`` and ``training_helpers``, imports by name.
"""

from __future__ import annotations

import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


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
