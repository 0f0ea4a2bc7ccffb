"""Image files in and out: decoding, the PyTorch port's test-time transform, encoding.

Masks and label maps are read by `adain_jax.io.masks`; the atomic write and the output folders
belong to `adain_jax.io.files` (shared with videos); contact sheets live in `adain_jax.io.sheets`.

The reference is naoto0804/pytorch-AdaIN, whose ``test.py`` prepares every image with
``Compose([Resize(size), CenterCrop(size), ToTensor()])`` (Resize only when ``size != 0``,
CenterCrop only with ``--crop``) and writes results with ``torchvision.utils.save_image``.
Those four steps are reproduced here with Pillow and numpy only, so that an RGB file gives
bit-for-bit the array the port feeds its network:

* ``resize_shorter_side`` = ``transforms.Resize(int)`` on a PIL image,
* ``center_crop``         = ``transforms.CenterCrop(int)``,
* ``to_array``            = ``transforms.ToTensor()`` (HWC instead of CHW),
* ``to_uint8``            = the quantisation inside ``torchvision.utils.save_image``.

The rules were read from torchvision's current source (``transforms/functional.py``:
``_compute_resized_output_size``, ``resize``, ``center_crop``, ``to_tensor``; ``utils.py``:
``save_image``), i.e. every release since 0.13, which is what the port gets when installed
next to the torch this project tests against. The size rule of ``Resize`` is the same in all
releases; see ``center_crop`` for the one rule that differed in an old release.

Where the port would crash or silently do something unhelpful, ``open_rgb`` is stricter and
kinder than a bare ``Image.open``: it applies the EXIF orientation (the port does not; for
files without an Orientation tag - all the example images - the result is identical),
converts every common mode to 8-bit RGB (alpha is composited over white), and turns every
failure into an ``ImageError`` that names the file.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from adain_jax.io import files
from adain_jax.io.files import FileError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "center_crop",
    "decode",
    "list_images",
    "load_image",
    "open_rgb",
    "resize_shorter_side",
    "resized_size",
    "save_image",
    "to_array",
    "to_uint8",
]


class ImageError(FileError):
    """A problem with one image file (or directory)."""


# Suffixes list_images picks up. Only formats that Pillow both reads and (except the
# single-channel PBM/PGM/PNM) writes, and that need no external program.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pbm",
    ".pgm",
    ".png",
    ".pnm",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)

# Decoders open_rgb and decode let Pillow try, whatever the file's suffix. Restricting them
# keeps Pillow from handing e.g. an EPS file to Ghostscript. No "MPO": phone JPEGs that Pillow
# calls MPO come through the JPEG opener (JpegImagePlugin.jpeg_factory returns an MpoImageFile
# for them, in every Pillow release), and Pillow 13 has no separate MPO entry to name.
_READ_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM")

# Suffix -> Pillow format for save_image (the RGB-capable subset of IMAGE_EXTENSIONS).
_SAVE_FORMATS = {
    ".bmp": "BMP",
    ".gif": "GIF",
    ".jpeg": "JPEG",
    ".jpg": "JPEG",
    ".png": "PNG",
    ".ppm": "PPM",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

class UnusableMode(ValueError):
    """Raised by a conversion (`open_converted`) whose message is the whole problem description."""


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def list_images(directory: str | os.PathLike) -> list[pathlib.Path]:
    """The image files directly inside ``directory``, sorted by name.

    Files are chosen by suffix (case-insensitive, see ``IMAGE_EXTENSIONS``); sub-directories
    are not searched. Hidden files (names starting with ".") are skipped: macOS leaves
    ``._name.jpg`` metadata files next to real images and they are not images.
    """
    directory = pathlib.Path(directory)
    if not directory.exists():
        raise ImageError(directory, "no such directory")
    if not directory.is_dir():
        raise ImageError(directory, "not a directory")
    try:
        entries = list(directory.iterdir())
    except OSError as e:
        raise ImageError(directory, f"cannot list the directory: {e.strerror or e}") from e
    images = sorted(
        p
        for p in entries
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not images:
        raise ImageError(
            directory, f"no image files in this directory (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return images


def _bomb_problem(message: str) -> str:
    limit = Image.MAX_IMAGE_PIXELS
    found = re.search(r"\((\d+) pixels\)", message)
    size = f"{int(found.group(1))} pixels" if found else "the image"
    suggestion = found.group(1) if found else "a larger number"
    return (
        f"image too large: {size} is over Pillow's decompression-bomb limit of {limit} pixels "
        f"(PIL.Image.MAX_IMAGE_PIXELS); if you trust this file, raise the limit, e.g. "
        f"`PIL.Image.MAX_IMAGE_PIXELS = {suggestion}` in Python, or set it to None to switch "
        f"the check off"
    )


def _scale_to_uint8(values: np.ndarray, maximum: int) -> np.ndarray:
    """Integers in [0, maximum] -> uint8, rounding to nearest (Pillow would clip instead)."""
    values = np.clip(values.astype(np.int64), 0, maximum)
    return ((values * 255 + maximum // 2) // maximum).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. May return ``image`` itself when it is already RGB."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips everything above 255 to white. Scale
        # 0..65535 to 0..255 instead. Mode I (32-bit) is what Pillow gives for some 16-bit
        # files, so it is read as 16-bit too, with values outside 0..65535 clipped.
        grey = _scale_to_uint8(np.asarray(image), 65535)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if mode == "F":
        # Float images have no fixed range. Data already in [0, 1] is read as such (the
        # usual convention, and the only reading that does not turn it black); anything
        # else follows Pillow's F -> L convention of 0..255, clipped. NaN -> 0.
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            values = values * 255.0
        grey = np.floor(np.clip(values, 0.0, 255.0) + 0.5).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        # Composite over white in 8-bit sRGB, as a browser shows a transparent image on a
        # white page: out = (c * a + 255 * (255 - a)) / 255, rounded to nearest. (The
        # network has no alpha input; black would turn transparent margins into hard edges.)
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[:, :, 3:]
        rgb = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode == "RGB":
        return image
    # L, P, 1, CMYK, YCbCr, ...: Pillow's conversions (CMYK uses its naive formula; embedded
    # ICC profiles are not applied, as torchvision does not apply them either).
    return image.convert("RGB")


def _decode_handle(handle, name: str, convert) -> tuple[Image.Image, Image.Image]:
    """Decodes the open binary ``handle``: loads the pixels, applies EXIF orientation and ``convert``.

    Every failure becomes an ImageError naming ``name``. Returns ``(result, decoded)``; ``result``
    may be ``decoded`` itself, which still refers to ``handle``.
    """
    try:
        # Pillow warns between MAX_IMAGE_PIXELS and twice that and raises above; both
        # become errors here, as a warning is easy to miss and a huge image is slow.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle, formats=_READ_FORMATS)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(name, _bomb_problem(str(e))) from e
    except UnidentifiedImageError as e:
        raise ImageError(
            name,
            "not an image file that can be read (unrecognised or unsupported format; "
            f"supported: {', '.join(IMAGE_EXTENSIONS)})",
        ) from e
    except MemoryError:
        raise
    except Exception as e:  # Pillow's decoders raise OSError, SyntaxError, ValueError, ...
        raise ImageError(name, f"corrupt or truncated image data ({type(e).__name__}: {e})") from e
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception as e:  # noqa: BLE001 - a malformed EXIF block should not make a good image unusable
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({e})", stacklevel=4)
        oriented = image
    try:
        result = convert(oriented)
    except UnusableMode as e:
        raise ImageError(name, str(e)) from e
    except MemoryError:
        raise
    except Exception as e:
        raise ImageError(name, f"cannot convert image mode {oriented.mode!r}: {e}") from e
    return result, image


def open_converted(path: str | os.PathLike, convert) -> Image.Image:
    """Opens ``path`` and decodes it as `_decode_handle` does, with ``convert`` (e.g. `to_rgb`; an
    `UnusableMode` it raises becomes the ImageError's problem).

    Every failure becomes an ImageError naming ``path``. The returned image no longer
    refers to the file.
    """
    name = os.fspath(path)
    try:
        handle = open(name, "rb")  # noqa: SIM115 - opened before `with` so each failure has its own message
    except FileNotFoundError as e:
        raise ImageError(name, "file not found") from e
    except IsADirectoryError as e:
        raise ImageError(name, "is a directory, not an image file") from e
    except PermissionError as e:
        raise ImageError(name, "permission denied") from e
    except OSError as e:
        raise ImageError(name, f"cannot open: {e.strerror or e}") from e
    with handle:
        result, image = _decode_handle(handle, name, convert)
        if result is image:
            result = image.copy()
    return result


def decode(data: object, name: str) -> Image.Image:
    """Encoded image bytes (e.g. a dataset record) -> 8-bit RGB, exactly as `open_rgb` reads a file.

    Same formats, EXIF orientation, mode conversions and decompression-bomb limit; ``name`` (a
    file name or record id) is what the ImageError for undecodable data names. ``data``: bytes,
    bytearray or memoryview (anything else is an ImageError: records come from untyped datasets).
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise ImageError(name, f"expected encoded image bytes, got {type(data).__name__}")
    result, _ = _decode_handle(io.BytesIO(data), name, to_rgb)
    return result


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Opens any supported image as 8-bit RGB, with its pixels loaded.

    * EXIF orientation is applied (``ImageOps.exif_transpose``), so phone photos come out
      upright.
    * Transparency (RGBA, LA, P or L/RGB with a transparent colour) is composited over
      white: ``(c * a + 255 * (255 - a)) / 255`` rounded, in 8-bit sRGB.
    * 16-bit grey (I;16, I;16B, I) is scaled 0..65535 -> 0..255 with rounding, not clipped
      as Pillow's own conversion does. Float (F) data in [0, 1] is scaled by 255, other
      float data is read as 0..255 and clipped. L, P, 1, CMYK are converted by Pillow.
    * Multi-frame files (GIF, TIFF) give their first frame.
    * Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is kept; an image
      over it, even in the range where Pillow only warns, raises ImageError saying how to
      raise the limit.

    Raises ImageError for a missing file, a directory, a non-image or unsupported format,
    truncated or corrupt data, or a too-large image.
    """
    return open_converted(path, to_rgb)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """``torchvision.transforms.Resize(size)`` for PIL images; ``size == 0`` keeps the image.

    The shorter side becomes ``size`` and the longer ``int(size * long / short)`` -
    truncated, not rounded (e.g. 729x512 at 256 -> 364x256, 600x800 at 512 -> 512x682).
    A square image counts as "width is the shorter side" (``w <= h``), which only matters
    for naming. An image whose shorter side already equals ``size`` is returned unchanged
    (the same object, as torchvision does), otherwise ``image.resize(..., BILINEAR)``, which
    is Pillow's antialiased bilinear filter, exactly what torchvision calls.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 0:
        raise ValueError(f"size must be >= 0 (0 keeps the image), got {size}")
    new_size = resized_size(*image.size, size)
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.BILINEAR)


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) `resize_shorter_side` gives a width x height image, without pixels.

    ``size == 0`` keeps the size. Same float expression as torchvision's
    ``_compute_resized_output_size``: Python's true division then int() truncation.
    """
    if size == 0:
        return width, height
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """``torchvision.transforms.CenterCrop(size)``: the central ``size`` x ``size`` square.

    Offsets are ``int(round((dim - size) / 2.0))`` with Python's ``round``, which rounds
    halves to even: cropping 512 out of 729 starts at column 108 (round(108.5)), out of 515
    at column 2 (round(1.5)). torchvision 0.8 briefly used ``int((dim - size + 1) * 0.5)``
    (109 for the first case); every later release uses ``round``, and so does this.

    A side shorter than ``size`` is padded with black first, ``(size - dim) // 2`` before
    and ``(size - dim + 1) // 2`` after, as torchvision does (load_image never needs it:
    after resize_shorter_side(size) both sides are at least ``size``).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"crop size must be > 0, got {size}")
    crop_w = crop_h = int(size)
    w, h = image.size
    if crop_w > w or crop_h > h:
        left = (crop_w - w) // 2 if crop_w > w else 0
        top = (crop_h - h) // 2 if crop_h > h else 0
        right = (crop_w - w + 1) // 2 if crop_w > w else 0
        bottom = (crop_h - h + 1) // 2 if crop_h > h else 0
        padded = Image.new(image.mode, (w + left + right, h + top + bottom))  # zeros = black
        padded.paste(image, (left, top))
        image = padded
        w, h = image.size
        if (w, h) == (crop_w, crop_h):
            return image
    top = round((h - crop_h) / 2.0)
    left = round((w - crop_w) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))


def to_array(image: Image.Image) -> np.ndarray:
    """``transforms.ToTensor()`` as HxWx3: float32 ``uint8 / 255`` (a float32 division, as
    torch does), C-contiguous. Non-RGB images are first converted as open_rgb does."""
    rgb = to_rgb(image)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.float32) / np.float32(255.0))


def load_image(path: str | os.PathLike, size: int = 0, crop: bool = False) -> np.ndarray:
    """The port's ``test_transform(size, crop)`` on a file: HxWx3 float32 in [0, 1].

    open_rgb -> resize_shorter_side(size) (skipped when size is 0) -> center_crop(size) when
    ``crop`` -> to_array. ``crop`` needs ``size > 0`` (the port would call CenterCrop(0)).
    """
    if crop and not size:
        raise ValueError("crop=True needs a size > 0 to crop to")
    image = open_rgb(path)
    image = resize_shorter_side(image, size)
    if crop:
        image = center_crop(image, size)
    return to_array(image)


def to_uint8(array) -> np.ndarray:
    """``torchvision.utils.save_image``'s quantisation: ``clamp(x * 255 + 0.5, 0, 255)`` then
    a truncating cast to uint8, all in float32 as torch computes it (so values round half up
    to the nearest level). NaN becomes 0 (torch leaves NaN -> uint8 undefined)."""
    x = np.asarray(array, dtype=np.float32)
    x = x * np.float32(255.0)
    x = x + np.float32(0.5)
    x = np.clip(x, 0.0, 255.0)
    x = np.nan_to_num(x, nan=0.0)
    return x.astype(np.uint8)


def _as_image_array(path: str, array) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 4 and arr.shape[0] == 1:  # a batch of one, as a network returns it
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(path, f"expected an HxWx3 image array, got shape {tuple(np.shape(array))}")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageError(path, f"expected a float array in [0, 1] (or uint8), got dtype {arr.dtype}")
    return to_uint8(arr)


def _save_format(path: pathlib.Path) -> str:
    """The Pillow format ``path``'s suffix asks for; ImageError for one this Pillow cannot write."""
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(path, f"unknown image extension {path.suffix!r}; use one of {', '.join(_SAVE_FORMATS)}")
    if fmt == "WEBP" and not features.check("webp"):
        raise ImageError(path, "this Pillow was built without WebP support; save as .png or .jpg")
    return fmt


def save_image(path: str | os.PathLike, array, *, jpeg_quality: int = 95) -> None:
    """Writes an HxWx3 float array in [0, 1] (quantised by ``to_uint8``) to ``path``.

    A uint8 array is written as is, and a leading batch axis of 1 is dropped. The format
    follows the suffix (see ``_SAVE_FORMATS``); an unknown suffix raises ImageError before
    anything is written. JPEG and WebP use quality ``jpeg_quality`` (95; the port's
    ``save_image`` leaves Pillow's default of 75 - pass 75 to reproduce its files).

    The write is atomic (`adain_jax.io.files.write_atomically`): there is never a partial or
    empty output, and an existing ``path`` is left untouched on failure. Missing parent
    directories are created.
    """
    path = pathlib.Path(path)
    fmt = _save_format(path)
    image = Image.fromarray(_as_image_array(os.fspath(path), array), "RGB")
    options = {"quality": int(jpeg_quality)} if fmt in ("JPEG", "WEBP") else {}
    files.write_atomically(path, lambda handle: image.save(handle, format=fmt, **options), error=ImageError,
                           what="image")
