"""Shared fixtures: random weights in the library's layout and small generated images; registers the
skip policy (tests/skip_policy.py: under CI=true a skip not in tests/skips_allowed.txt fails the run).

pytest puts the repository root and ``tests/`` on the path (``pythonpath`` in pyproject.toml), so
``convert``, ``train`` and ``benchmarks`` resolve as they do for ``python -m``, and the shared test
helpers (``helpers``, ``torch_reference``, ``training_helpers``) import by name. Tests import helpers
from ``helpers``, never from this file.
"""

from __future__ import annotations

import os

import pytest

from helpers import write_image

pytest_plugins = ["skip_policy"]

# The CLI turns on JAX's persistent compilation cache; tests stay hermetic and leave ~/.cache alone
# (tests/test_compilation_cache.py covers the cache itself).
os.environ.setdefault("ADAIN_JAX_CACHE_DIR", "off")


@pytest.fixture(scope="session")
def random_weights():
    import jax

    import adain_jax

    return adain_jax.init_weights(jax.random.key(0))


@pytest.fixture(scope="session")
def weights_dir(random_weights, tmp_path_factory):
    import adain_jax

    return adain_jax.save_weights(random_weights, tmp_path_factory.mktemp("w") / "flax", {"note": "random"})


@pytest.fixture
def image_factory(tmp_path):
    def make(name, height=40, width=48, seed=0, mode="RGB"):
        return write_image(tmp_path / name, height, width, seed, mode)

    return make
