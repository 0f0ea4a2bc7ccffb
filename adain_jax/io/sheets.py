"""Pictures for people: captioned contact sheets (demo results, training samples, study grids).

`contact_sheet` lays out rows of images (arrays in [0, 1] or uint8, grey or RGB, any sizes) in
fixed-size cells with column labels, row captions and a header, and returns an RGB uint8 array
for `adain_jax.io.images.save_image`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from adain_jax.io.images import to_uint8


def _load_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # noqa: BLE001 - Pillow without FreeType: the fixed-size bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    text = " ".join(str(text).split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def _cell_image(array, cell: int) -> Image.Image:
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:  # masks and other grey images
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"contact_sheet: expected HxWx3 (or HxW) arrays, got shape {np.shape(array)}")
    pixels = arr if arr.dtype == np.uint8 else to_uint8(arr)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    w, h = image.size
    scale = min(cell / w, cell / h)
    fitted = (max(1, min(cell, round(w * scale))), max(1, min(cell, round(h * scale))))
    if fitted != image.size:
        image = image.resize(fitted, Image.Resampling.LANCZOS)
    return image


def contact_sheet(
    rows: Sequence[Sequence],
    labels: Sequence[str] | None = None,
    cell: int = 256,
    header: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """A grid of images on white, for demos: float32 HxWx3 in [0, 1] (write it with save_image).

    ``rows`` is a list of rows, each a list of HxWx3 float arrays in [0, 1] (uint8 and grey
    HxW arrays are accepted too; ``None`` leaves a cell blank, shorter rows are padded with
    blank cells). Every image is scaled to fit a ``cell`` x ``cell`` box keeping its aspect
    ratio and centred in it. ``labels`` (at most one per column) are drawn above the
    columns, ``row_labels`` (one per row) as a caption above each row, and ``header`` as a
    line above everything, in Pillow's default font; text too wide for its space is
    shortened with "...".
    """
    rows = [list(row) for row in rows]
    if not rows or not any(rows):
        raise ValueError("contact_sheet needs at least one row with at least one image")
    cell = int(cell)
    if cell < 8:
        raise ValueError(f"cell must be at least 8 pixels, got {cell}")
    columns = max(len(row) for row in rows)
    labels = [] if labels is None else [str(label) for label in labels]
    if len(labels) > columns:
        raise ValueError(f"{len(labels)} labels for {columns} columns")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")

    gap = max(4, cell // 32)
    font = _load_font(max(10, cell // 16))
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (11, 0)
    line = ascent + descent
    header_h = line + gap if header else 0
    label_h = line + gap if any(labels) else 0
    caption_h = line + gap // 2 if row_labels is not None else 0
    width = columns * cell + (columns + 1) * gap
    height = gap + header_h + label_h + len(rows) * (caption_h + cell + gap)

    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = gap
    if header:
        text = _fit_text(draw, header, font, width - 2 * gap)
        draw.text((gap, y), text, fill=(0, 0, 0), font=font)
        y += header_h
    if label_h:
        for c, label in enumerate(labels):
            text = _fit_text(draw, label, font, cell)
            x = gap + c * (cell + gap) + (cell - draw.textlength(text, font=font)) / 2
            draw.text((math.floor(x), y), text, fill=(0, 0, 0), font=font)
        y += label_h
    for r, row in enumerate(rows):
        if row_labels is not None:
            draw.text((gap, y), _fit_text(draw, row_labels[r], font, width - 2 * gap), fill=(0, 0, 0), font=font)
            y += caption_h
        for c, array in enumerate(row):
            if array is None:
                continue
            tile = _cell_image(array, cell)
            x0 = gap + c * (cell + gap) + (cell - tile.width) // 2
            y0 = y + (cell - tile.height) // 2
            sheet.paste(tile, (x0, y0))
        y += cell + gap
    return np.ascontiguousarray(np.asarray(sheet, dtype=np.float32) / np.float32(255.0))
