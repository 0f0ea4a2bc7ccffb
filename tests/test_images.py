"""Tests for adain_jax.io.images: torchvision-equivalent transforms, mode handling, errors, saving."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from adain_jax.io import images as image_io
from adain_jax.io.images import (
    IMAGE_EXTENSIONS,
    ImageError,
    center_crop,
    list_images,
    load_image,
    open_rgb,
    resize_shorter_side,
    save_image,
    to_array,
    to_uint8,
)
from adain_jax.io.masks import load_mask

RNG = np.random.default_rng(0)


def noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
    channels = len(Image.new(mode, (1, 1)).getbands())
    data = RNG.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    return Image.fromarray(data[:, :, 0] if channels == 1 else data, mode)


def column_coded(w: int, h: int) -> Image.Image:
    """R = column % 256, G = column // 256, B = row % 256: every pixel says where it came from."""
    x = np.arange(w)[None, :].repeat(h, 0)
    y = np.arange(h)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x % 256, x // 256, y % 256], axis=2).astype(np.uint8), "RGB")


def origin(image: Image.Image, px: int = 0, py: int = 0) -> tuple[int, int]:
    r, g, b = image.getpixel((px, py))
    return r + 256 * g, b


# ---------------------------------------------------------------- resize / crop (torchvision rules)


@pytest.mark.parametrize(
    "size_in, size, size_out",
    [
        ((729, 512), 256, (364, 256)),  # 364.5 -> 364: truncated, not rounded
        ((512, 729), 256, (256, 364)),  # portrait
        ((300, 300), 512, (512, 512)),  # square, upscaled
        ((600, 800), 512, (512, 682)),  # 682.67 -> 682
        ((640, 427), 512, (767, 512)),  # 767.4
        ((1120, 704), 512, (814, 512)),
        ((513, 512), 256, (256, 256)),  # 256.5 -> 256
        ((7, 3), 5, (11, 5)),  # 11.67 -> 11
    ],
)
def test_resize_shorter_side_sizes(size_in, size, size_out):
    out = resize_shorter_side(Image.new("RGB", size_in), size)
    assert out.size == size_out


def test_resize_shorter_side_pixels_match_pil_bilinear():
    # Expected sizes written out by hand from torchvision's _compute_resized_output_size
    # (int(size * long / short)); each would be one larger with rounding.
    image = noise(97, 61)
    for size, expected in [(40, (63, 40)), (23, (36, 23)), (150, (238, 150))]:
        out = resize_shorter_side(image, size)
        assert out.size == expected
        reference = image.resize(expected, Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(reference))
    portrait = noise(61, 97)
    out = resize_shorter_side(portrait, 40)
    np.testing.assert_array_equal(
        np.asarray(out), np.asarray(portrait.resize((40, 63), Image.Resampling.BILINEAR))
    )


def test_resize_shorter_side_keeps_image_when_already_that_size_or_size_zero():
    image = noise(29, 17)
    assert resize_shorter_side(image, 17) is image
    assert resize_shorter_side(image, 0) is image
    tall = noise(17, 29)
    assert resize_shorter_side(tall, 17) is tall
    assert resize_shorter_side(image, 18).size == (30, 18)  # int(18 * 29 / 17) = 30


def test_resize_shorter_side_rejects_bad_sizes():
    with pytest.raises(ValueError, match=">= 0"):
        resize_shorter_side(noise(4, 4), -1)
    with pytest.raises(TypeError):
        resize_shorter_side(noise(4, 4), 2.5)


@pytest.mark.parametrize(
    "size_in, size, left, top",
    [
        ((729, 512), 512, 108, 0),  # round(108.5) = 108 (half to even); torchvision 0.8 gave 109
        ((515, 512), 512, 2, 0),  # round(1.5) = 2
        ((514, 512), 512, 1, 0),
        ((517, 512), 512, 2, 0),  # round(2.5) = 2
        ((512, 729), 512, 0, 108),
        ((20, 20), 7, 6, 6),  # round(6.5) = 6
        ((21, 21), 7, 7, 7),
    ],
)
def test_center_crop_offsets(size_in, size, left, top):
    out = center_crop(column_coded(*size_in), size)
    assert out.size == (size, size)
    assert origin(out) == (left, top % 256)  # rows are coded modulo 256
    assert origin(out, size - 1, size - 1) == (left + size - 1, (top + size - 1) % 256)


def test_center_crop_pads_small_images_with_black_like_torchvision():
    image = column_coded(3, 5)  # crop 6: pad x by 1 left / 2 right, y by 0 top / 1 bottom
    out = np.asarray(center_crop(image, 6)).astype(int)
    assert out.shape == (6, 6, 3)
    np.testing.assert_array_equal(out[:5, 1:4], np.asarray(image))
    assert out[:, 0].sum() == 0 and out[:, 4:].sum() == 0 and out[5].sum() == 0


def test_center_crop_rejects_zero():
    with pytest.raises(ValueError):
        center_crop(noise(4, 4), 0)


# ---------------------------------------------------------------- load_image / to_array


def test_to_array_is_totensor_hwc():
    image = noise(5, 3)
    arr = to_array(image)
    assert arr.dtype == np.float32 and arr.shape == (3, 5, 3) and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, np.asarray(image).astype(np.float32) / np.float32(255))
    assert to_array(Image.new("L", (2, 2), 51)).shape == (2, 2, 3)


def test_load_image_is_resize_then_center_crop(tmp_path):
    image = column_coded(90, 60)
    path = tmp_path / "c.png"
    image.save(path)
    np.testing.assert_array_equal(load_image(path), to_array(image))
    resized = image.resize((45, 30), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(load_image(path, 30), to_array(resized))
    cropped = resized.crop((8, 0, 38, 30))  # round((45 - 30) / 2) = round(7.5) = 8
    out = load_image(path, 30, crop=True)
    assert out.shape == (30, 30, 3)
    np.testing.assert_array_equal(out, to_array(cropped))
    with pytest.raises(ValueError, match="crop"):
        load_image(path, 0, crop=True)


def test_to_array_and_to_uint8_match_torch():
    torch = pytest.importorskip("torch")
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    expected = torch.from_numpy(levels.copy()).to(torch.float32).div(255).numpy()
    np.testing.assert_array_equal(to_array(Image.fromarray(levels, "RGB")), expected)
    x = np.concatenate(
        [RNG.uniform(-0.2, 1.2, 5000), np.arange(-2, 260) / 255.0, (np.arange(256) + 0.5) / 255.0]
    ).astype(np.float32)
    reference = torch.from_numpy(x.copy()).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(to_uint8(x), reference)


# ---------------------------------------------------------------- open_rgb: orientation and modes


@pytest.mark.parametrize(
    "orientation, size, red_at",
    [
        (1, (32, 16), (2, 8)),  # left half red, as stored
        (3, (32, 16), (29, 8)),  # 180 degrees: red on the right
        (6, (16, 32), (8, 2)),  # rotate 90 clockwise: red on top
        (8, (16, 32), (8, 29)),  # rotate 90 counter-clockwise: red at the bottom
    ],
)
def test_open_rgb_applies_exif_orientation(tmp_path, orientation, size, red_at):
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(stored, "RGB").save(path, exif=exif.tobytes(), quality=95)
    image = open_rgb(path)
    assert image.mode == "RGB" and image.size == size
    r, g, b = image.getpixel(red_at)
    assert r > 200 and b < 60
    arr = load_image(path)
    assert arr.shape == (size[1], size[0], 3)


def _saved(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_open_rgb_grey_and_bilevel(tmp_path):
    grey = open_rgb(_saved(tmp_path, Image.new("L", (3, 2), 77), "l.png"))
    assert grey.mode == "RGB" and grey.getpixel((1, 1)) == (77, 77, 77)
    bilevel = Image.new("1", (4, 1), 0)
    bilevel.putpixel((2, 0), 1)
    out = np.asarray(open_rgb(_saved(tmp_path, bilevel, "b.png")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 255, 0])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_open_rgb_composites_alpha_over_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 128))  # half-transparent red
    rgba.putpixel((1, 0), (0, 0, 0, 0))  # fully transparent black
    out = open_rgb(_saved(tmp_path, rgba, "rgba.png"))
    assert out.getpixel((0, 0)) == (255, 127, 127)  # 0 * 128/255 + 255 * 127/255 = 127
    assert out.getpixel((1, 0)) == (255, 255, 255)
    la = Image.new("LA", (1, 1), (0, 64))
    assert open_rgb(_saved(tmp_path, la, "la.png")).getpixel((0, 0)) == (191, 191, 191)


def test_open_rgb_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (3, 1), 0)
    p.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0])
    p.putpixel((1, 0), 1)
    p.putpixel((2, 0), 2)
    plain = open_rgb(_saved(tmp_path, p, "p.png"))
    assert [plain.getpixel((x, 0)) for x in range(3)] == [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    transparent = open_rgb(_saved(tmp_path, p, "pt.png", transparency=1))
    assert [transparent.getpixel((x, 0)) for x in range(3)] == [(255, 0, 0), (255, 255, 255), (0, 255, 0)]
    gif = open_rgb(_saved(tmp_path, p, "pt.gif", transparency=0))
    assert gif.getpixel((0, 0)) == (255, 255, 255) and gif.getpixel((2, 0)) == (0, 255, 0)


def test_open_rgb_cmyk(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (0, 255, 255, 0))  # red
    cmyk.putpixel((1, 0), (0, 0, 0, 255))  # black
    out = open_rgb(_saved(tmp_path, cmyk, "c.tif"))
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 0)) == (0, 0, 0)


@pytest.mark.parametrize("dtype, name", [(np.uint16, "u.png"), (">u2", "b.tif"), (np.int32, "i.tif")])
def test_open_rgb_scales_16_bit(tmp_path, dtype, name):
    values = np.array([[0, 257, 32768, 65535]]).astype(dtype)
    path = _saved(tmp_path, Image.fromarray(values), name)
    assert Image.open(path).mode in ("I;16", "I;16B", "I")
    arr = to_array(open_rgb(path))
    np.testing.assert_array_equal(arr[0, :, 0] * 255, [0, 1, 128, 255])
    assert arr[0, 3, 0] == 1.0 and abs(arr[0, 2, 0] - 0.5) < 0.003
    assert (arr[..., 0] == arr[..., 2]).all()


def test_open_rgb_float_images(tmp_path):
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    out = np.asarray(open_rgb(_saved(tmp_path, unit, "f.tif")))
    np.testing.assert_array_equal(out[0, :, 1], [0, 128, 255])
    wide = Image.fromarray(np.array([[-3.0, 100.4, 300.0]], np.float32))
    out = np.asarray(open_rgb(_saved(tmp_path, wide, "g.tif")))
    np.testing.assert_array_equal(out[0, :, 1], [0, 100, 255])


def test_open_rgb_returns_a_detached_image(tmp_path):
    path = _saved(tmp_path, noise(8, 8), "n.png")
    image = open_rgb(path)
    os.remove(path)
    assert image.copy().resize((4, 4)).size == (4, 4)


# ---------------------------------------------------------------- open_rgb: errors


def test_decompression_bomb_error_is_image_error(tmp_path, monkeypatch):
    path = _saved(tmp_path, Image.new("RGB", (64, 64)), "big.png")  # 4096 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over twice the limit: Pillow raises
    with pytest.raises(ImageError) as info:
        open_rgb(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "4096 pixels" in message and "1000" in message and "MAX_IMAGE_PIXELS" in message


def test_decompression_bomb_warning_is_image_error(tmp_path, monkeypatch):
    path = _saved(tmp_path, Image.new("RGB", (64, 64)), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between limit and 2x: Pillow only warns
    with pytest.raises(ImageError, match=r"over Pillow's decompression-bomb limit of 3000"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4096)
    assert open_rgb(path).size == (64, 64)


def test_missing_directory_and_non_image_files(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageError) as info:
        open_rgb(missing)
    assert str(info.value) == f"{missing}: file not found"
    assert info.value.path == str(missing) and info.value.problem == "file not found"
    with pytest.raises(ImageError, match="is a directory"):
        open_rgb(tmp_path)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image file"):
        open_rgb(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: not an image file"):
        load_mask(empty, 4, 4)


@pytest.mark.parametrize("name", ["t.jpg", "t.png"])
def test_truncated_files(tmp_path, name):
    path = _saved(tmp_path, noise(64, 64), name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        open_rgb(path)
    assert str(info.value).startswith(f"{path}: corrupt or truncated image data")
    assert "\n" not in str(info.value)


def test_image_error_pickles():
    error = ImageError("a/b.png", "file not found")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, ImageError) and isinstance(again, ValueError)
    assert (again.path, again.problem, str(again)) == ("a/b.png", "file not found", "a/b.png: file not found")


# ---------------------------------------------------------------- decode: bytes, as open_rgb reads files


def test_decode_gives_what_open_rgb_gives_for_the_same_bytes(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise
    rgba = noise(5, 4, "RGBA")
    files = [
        _saved(tmp_path, noise(6, 4), "o.jpg", exif=exif.tobytes()),
        _saved(tmp_path, rgba, "a.png"),
        _saved(tmp_path, Image.fromarray(np.array([[0, 257, 65535]], np.uint16)), "s.png"),
        _saved(tmp_path, Image.new("CMYK", (3, 2), (0, 255, 255, 0)), "c.tif"),
        _saved(tmp_path, noise(4, 3, "P"), "p.gif"),
    ]
    for path in files:
        decoded = image_io.decode(path.read_bytes(), "record 7")
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(open_rgb(path)))
    assert image_io.decode(files[0].read_bytes(), "x").size == (4, 6)  # EXIF orientation applied


def test_decode_reads_multi_picture_jpegs_as_jpeg():
    # Phone cameras write MPO (several JPEGs in one file); Pillow opens them with its JPEG opener.
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (255, 0, 0)).save(buf, format="MPO", save_all=True,
                                              append_images=[Image.new("RGB", (8, 6), (0, 0, 255))])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    r, g, b = image_io.decode(buf.getvalue(), "phone.jpg").getpixel((0, 0))  # the first picture
    assert r > 240 and b < 15


def test_decode_errors_name_the_record(tmp_path, monkeypatch):
    with pytest.raises(ImageError) as info:
        image_io.decode(b"not an image", "coco/123.jpg")
    assert str(info.value).startswith("coco/123.jpg: not an image file")
    jpeg = _saved(tmp_path, noise(64, 64), "t.jpg").read_bytes()
    with pytest.raises(ImageError, match=r"^rec: corrupt or truncated image data"):
        image_io.decode(jpeg[: len(jpeg) // 2], "rec")
    with pytest.raises(ImageError, match=r"^rec: expected encoded image bytes, got str"):
        image_io.decode("a.jpg", "rec")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 pixels: only a warning in Pillow
    with pytest.raises(ImageError, match=r"^big: image too large: 4096 pixels"):
        image_io.decode(jpeg, "big")
    with pytest.raises(ImageError, match="not an image file"):
        image_io.decode(_saved(tmp_path, noise(16, 16), "i.ico").read_bytes(), "ico")  # Pillow reads ICO; we do not


# ---------------------------------------------------------------- list_images


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.jpeg", "notes.txt", ".hidden.jpg", "._a.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "sub.png" / "inner.jpg").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.jpeg"]
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"} <= set(IMAGE_EXTENSIONS)


def test_list_images_errors(tmp_path):
    with pytest.raises(ImageError, match="no such directory"):
        list_images(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ImageError, match="no image files"):
        list_images(tmp_path)
    with pytest.raises(ImageError, match="not a directory"):
        list_images(tmp_path / "x.txt")


# ---------------------------------------------------------------- to_uint8 / save_image


def test_to_uint8_matches_save_image_rounding():
    x = np.array([0.0, 1.0, 0.5, 127.49 / 255, 127.5 / 255, -0.1, 1.2, np.nan, np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 255, 128, 127, 128, 0, 255, 0, 255, 0])
    assert to_uint8(np.zeros((2, 3, 3))).dtype == np.uint8


def test_png_round_trip_is_exact(tmp_path):
    x = RNG.uniform(-0.05, 1.05, size=(17, 23, 3)).astype(np.float32)
    path = tmp_path / "deep" / "er" / "out.png"  # parents are created
    save_image(path, x)
    back = np.asarray(open_rgb(path))
    np.testing.assert_array_equal(back, to_uint8(x))
    np.testing.assert_array_equal(load_image(path) * 255, to_uint8(x).astype(np.float32))
    assert os.listdir(path.parent) == ["out.png"]


def test_save_image_formats_and_inputs(tmp_path):
    x = RNG.uniform(size=(1, 8, 10, 3)).astype(np.float32)  # batch of one
    for name in ["a.jpg", "a.JPEG", "a.bmp", "a.tif", "a.webp", "a.gif"]:
        save_image(tmp_path / name, x)
        assert open_rgb(tmp_path / name).size == (10, 8)
    save_image(tmp_path / "u.png", to_uint8(x[0]))  # uint8 is written as is
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "u.png")), to_uint8(x[0]))
    with pytest.raises(ImageError, match=r"expected an HxWx3 image array, got shape \(8, 10\)"):
        save_image(tmp_path / "bad.png", x[0, :, :, 0])
    with pytest.raises(ImageError, match="dtype int64"):
        save_image(tmp_path / "bad.png", np.zeros((2, 2, 3), np.int64))
    assert not (tmp_path / "bad.png").exists()


def test_save_image_unknown_extension_writes_nothing(tmp_path):
    target = tmp_path / "new" / "out.xyz"
    with pytest.raises(ImageError) as info:
        save_image(target, np.zeros((2, 2, 3), np.float32))
    assert str(info.value).startswith(f"{target}: unknown image extension '.xyz'")
    assert not (tmp_path / "new").exists()
    with pytest.raises(ImageError, match="unknown image extension ''"):
        save_image(tmp_path / "noext", np.zeros((2, 2, 3), np.float32))


def test_save_image_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    old = tmp_path / "keep.png"
    save_image(old, np.zeros((3, 3, 3), np.float32))
    before = old.read_bytes()

    def broken_save(self, fp, format=None, **params):
        fp.write(b"\x89PNG partial data")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError) as info:
        save_image(tmp_path / "new.png", np.ones((3, 3, 3), np.float32))
    assert str(info.value) == f"{tmp_path / 'new.png'}: could not write the image: No space left on device"
    with pytest.raises(ImageError):
        save_image(old, np.ones((3, 3, 3), np.float32))
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]  # no output, no temporary file
    assert old.read_bytes() == before  # the previous file is untouched

    def interrupted_save(self, fp, format=None, **params):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_image(tmp_path / "new.png", np.ones((3, 3, 3), np.float32))
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]


def test_save_image_unwritable_destinations(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageError) as info:
        save_image(blocker / "sub" / "out.png", np.zeros((2, 2, 3), np.float32))
    assert str(info.value) == (
        f"{blocker / 'sub' / 'out.png'}: cannot create the output directory {blocker / 'sub'}: "
        f"{blocker} is a file, not a directory"
    )
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="is a directory"):
        save_image(tmp_path / "dir.png", np.zeros((2, 2, 3), np.float32))

    real_open = os.open

    def denied(path, flags, mode=0o777, **kwargs):  # root ignores chmod, so simulate EACCES
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(image_io.os, "open", denied)
    target = tmp_path / "ro" / "out.png"
    with pytest.raises(ImageError) as info:
        save_image(target, np.zeros((2, 2, 3), np.float32))
    assert str(info.value) == f"{target}: cannot write to the directory {tmp_path / 'ro'}: permission denied"


def test_saved_file_gets_normal_permissions(tmp_path):
    save_image(tmp_path / "p.png", np.zeros((2, 2, 3), np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------- contact sheet
