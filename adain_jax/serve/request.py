"""What one ``POST /api/stylize`` asks for: multipart fields -> a validated `Job`, or a `RequestError`.

The fields, defaults and meanings are those of ``adain-jax stylize`` (alpha 1, sizes 512, comma-
separated style weights, a mask for two or more styles), so the same options give the same image.
Only the cheap checks live here (no image is decoded); the checks that need pixels are the worker's.
Nothing here knows about HTTP frameworks: the app hands over ``(name, value)`` pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

from adain_jax import controls as controls_lib

SCALAR_FIELDS = ("alpha", "style_weights", "preserve_color", "content_size", "style_size", "crop")
FILE_FIELDS = ("content", "style", "mask")
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no", "")


class RequestError(Exception):
    """A request the server will not run: ``status`` (4xx, or 503 when busy) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())


@dataclasses.dataclass(frozen=True)
class Upload:
    """One uploaded file: the form field it came in ("content", "style 2", "mask"), its name, its bytes."""

    field: str
    filename: str
    data: bytes = dataclasses.field(repr=False)

    @property
    def label(self) -> str:
        """How error messages name it, e.g. ``style 2 (la_muse.jpg)``."""
        return f"{self.field} ({self.filename})" if self.filename else self.field

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def __str__(self) -> str:  # the runner names styles with str() in its messages
        return self.label


@dataclasses.dataclass(frozen=True)
class Options:
    alpha: float = 1.0
    style_weights: tuple[float, ...] | None = None
    preserve_color: bool = False
    content_size: int = 512
    style_size: int = 512
    crop: bool = False


@dataclasses.dataclass(frozen=True)
class Job:
    content: Upload
    styles: tuple[Upload, ...]
    mask: Upload | None
    options: Options

    def controls(self) -> controls_lib.Controls:
        """The job's style controls, built (and so checked: ControlError) by `adain_jax.controls`."""
        o = self.options
        return controls_lib.Controls(num_styles=len(self.styles), alpha=o.alpha, style_weights=o.style_weights,
                                     masked=self.mask is not None, preserve_color=o.preserve_color, crop=o.crop)

    def filename(self) -> str:
        """The result's file name, as ``adain-jax stylize`` names it (with .png)."""
        return self.controls().output_name(_stem(self.content.filename, "content"),
                                         [_stem(s.filename, "style") for s in self.styles], "png")


def _stem(filename: str, default: str) -> str:
    base = re.split(r"[\\/]", filename or "")[-1].rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:60].strip("._") or default


def _one(name: str, values: list[str]) -> str:
    if len(values) > 1:
        raise RequestError(400, f"field {name!r} was given {len(values)} times; give it once")
    return values[0].strip()


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RequestError(400, f"alpha must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise RequestError(400, f"alpha must be in [0, 1], got {text}")
    return value


def _weights(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise RequestError(400, f"style_weights: expected comma-separated numbers, got {text!r}") from None
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise RequestError(400, f"style_weights must be non-negative and not all zero, got {text!r}")
    return values


def _flag(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise RequestError(400, f"{name} must be true or false, got {text!r}")


def _size(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RequestError(400, f"{name} must be a whole number of pixels (0 keeps the size), got {text!r}") from None
    if value < 0:
        raise RequestError(400, f"{name} must be >= 0 (0 keeps the original size), got {value}")
    return value


def parse(items, *, max_size: int, max_styles: int) -> Job:
    """``(name, value)`` pairs, each value a str (a plain field) or an `Upload` -> a `Job`.

    Raises RequestError: 400 for a missing, repeated, unknown or malformed field or a combination
    ``adain-jax stylize`` refuses; 413 for a size over ``max_size``.
    """
    scalars: dict[str, list[str]] = {}
    files: dict[str, list[Upload]] = {}
    for name, value in items:
        if name in FILE_FIELDS:
            if not isinstance(value, Upload):
                raise RequestError(400, f"field {name!r} must be a file upload (multipart with a filename, "
                                        f"e.g. curl -F {name}=@photo.jpg)")
            files.setdefault(name, []).append(value)
        elif name in SCALAR_FIELDS:
            if isinstance(value, Upload):
                raise RequestError(400, f"field {name!r} must be a plain value, not a file")
            scalars.setdefault(name, []).append(value)
        else:
            raise RequestError(400, f"unknown field {name!r}; fields are: {', '.join(FILE_FIELDS + SCALAR_FIELDS)}")

    contents, styles, masks = files.get("content", []), files.get("style", []), files.get("mask", [])
    if not contents:
        raise RequestError(400, "missing the 'content' image (a file field named content)")
    if len(contents) > 1:
        raise RequestError(400, f"give one 'content' image per request, got {len(contents)}")
    if not styles:
        raise RequestError(400, "missing the 'style' image (a file field named style; repeat it for several styles)")
    if len(styles) > max_styles:
        raise RequestError(400, f"at most {max_styles} style images per request, got {len(styles)}")
    if len(masks) > 1:
        raise RequestError(400, f"give at most one 'mask', got {len(masks)}")

    get = {k: _one(k, v) for k, v in scalars.items()}
    options = Options(
        alpha=_alpha(get["alpha"]) if "alpha" in get else 1.0,
        style_weights=_weights(get["style_weights"]) if get.get("style_weights") else None,
        preserve_color=_flag("preserve_color", get.get("preserve_color", "")),
        content_size=_size("content_size", get["content_size"]) if "content_size" in get else 512,
        style_size=_size("style_size", get["style_size"]) if "style_size" in get else 512,
        crop=_flag("crop", get.get("crop", "")),
    )
    for name in ("content_size", "style_size"):  # the defaults too: a server may have --max-size under 512
        if getattr(options, name) > max_size:
            raise RequestError(413, f"{name} {getattr(options, name)} is over this server's limit of {max_size} "
                                    "pixels on the shorter side (adain-jax serve --max-size)")
    mask = masks[0] if masks else None
    if options.crop and (options.content_size == 0 or options.style_size == 0):
        raise RequestError(400, "crop needs content_size and style_size > 0")
    numbered = tuple(dataclasses.replace(s, field=f"style {i + 1}") if len(styles) > 1 else s
                     for i, s in enumerate(styles))
    job = Job(contents[0], numbered, mask, options)
    try:  # the rules of adain-jax stylize (adain_jax.controls), in this API's field names
        job.controls()
    except controls_lib.ControlError as e:
        raise RequestError(400, field_message(e)) from None
    return job


def field_message(error: controls_lib.ControlError) -> str:
    """A refusal of `adain_jax.controls` in this API's words (its form fields, not the CLI's flags)."""
    d = error.detail
    words = {
        controls_lib.BOTH: "give style_weights (interpolation) or a mask (spatial control), not both",
        controls_lib.TOO_FEW: "style_weights and mask need at least two style images",
        controls_lib.COUNT: f"style_weights has {d.get('weights')} values for {d.get('num_styles')} styles",
        controls_lib.UNCOMBINED: f"{d.get('num_styles')} style images: give style_weights (interpolation) or a "
                                 "mask (spatial control) to combine them; one request answers one image",
        controls_lib.MASK_CROP: "the mask is drawn for the whole content image; it cannot be combined with crop",
    }
    if error.rule == controls_lib.STYLE_SIZES:
        why = "preserve_color" if d["why"] == "preserve_color" else "a decoder with style skips"
        return f"with {why}, combined styles must have the same size after resizing (use crop): {', '.join(d['names'])}"
    return words.get(error.rule, str(error))
