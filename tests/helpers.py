"""Shared test helpers, imported by name (``from helpers import write_image``): repository paths,
generated images, running a script on several CPU devices in a fresh process, and rounding-error
bounds for float32 / bfloat16 results. Fixtures live in conftest.py; pytest advises against importing
from conftest.

pytest puts ``tests/`` on the path (``pythonpath`` in pyproject.toml), so this module, like
``torch_reference`` and ``training_helpers``, imports by name.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

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


def run_on_devices(script: str, devices: int, *args, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    """Run the Python source ``script`` (with ``args`` as its sys.argv[1:]) in a fresh process whose JAX
    sees ``devices`` CPU devices, and return it once it has exited 0 (else fail with its stderr's tail).

    The device count is fixed when JAX's backend starts, hence the subprocess: XLA_FLAGS gets
    ``--xla_force_host_platform_device_count`` after any flags already set, JAX_PLATFORMS is cpu, the
    working directory is the repository root, and the root and tests/ are on the path (so
    ``adain_jax``, ``train`` and these helpers import as they do here). ``env`` adds variables."""
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", **{k: str(v) for k, v in env.items()}}
    flags = f"{environment.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    environment["XLA_FLAGS"] = flags.strip()
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"the {devices}-device script exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


# Rounding to nearest moves a value by at most half the spacing of its type, relative to its magnitude
# (the unit roundoff): float32 has 24 significand bits, bfloat16 8, so a bfloat16 result is within
# 2^-8 of its value of the exact one, and one bfloat16 ulp is at most 2^-7 of the value (0.0078 at 1).
# Bounds on bfloat16 results are written with these, from the roundings of the path that runs, never
# as a tolerance that one machine's summation order happened to meet.
U_F32, U_BF16 = 2.0 ** -24, 2.0 ** -8


def float32_sum_error(terms: int) -> float:
    """gamma_K (Higham): a float32 sum of ``terms`` terms, in any order, FMA or not, is within
    gamma_K * sum|terms| of the exact sum (gamma_K = K u / (1 - K u), u = 2^-24)."""
    return terms * U_F32 / (1 - terms * U_F32)


def rounding_error(magnitude, float32_terms: int, bf16_roundings: int = 0) -> np.ndarray:
    """The most a computed sum can differ from the exact one, elementwise, given ``magnitude``, the sum
    of its terms' absolute values: each term is summed in float32 with at most ``float32_terms`` - 1
    others (a factor within 1 +- gamma_K), then goes through at most ``bf16_roundings`` roundings to
    bfloat16 (a conversion, or a bfloat16 addition of partial sums: each a factor within 1 +- 2^-8).
    A rounding the compiler leaves out (XLA may keep excess precision under jit) only tightens it."""
    factor = (1 + float32_sum_error(float32_terms)) * (1 + U_BF16) ** bf16_roundings
    return (factor - 1) * np.abs(np.asarray(magnitude, np.float64))
