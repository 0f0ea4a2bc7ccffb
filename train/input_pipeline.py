"""Content and style image streams: TFDS data sources in, host-local uint8 batches out.

Each of ``config.content`` and ``config.style`` is either

* a local folder of images (any depth), turned once into a TFDS dataset by `train.folder_dataset`, or
* the name of a TFDS dataset already prepared in the ``array_record`` format under
  ``config.tfds_data_dir`` (e.g. ``coco/2017``; only its ``image`` feature is read).

Both are read through TFDS *data sources* (random access by record index) and never through
tf.data, so TensorFlow is not needed at all (see docs/training.md for why).

Every sample is a pure function of ``(seed, stream, sample index)``:

* sample ``k`` of a stream is record ``perm_e[k mod N]`` with ``e = k // N`` and ``perm_e`` a
  permutation of the N records seeded by ``(seed, stream, e)``: an infinite stream of shuffled epochs;
* the image is decoded with Pillow (EXIF orientation applied, any mode converted to RGB as
  `adain_jax.io.images.open_rgb` does), its shorter side resized to ``config.image_size`` keeping the
  aspect ratio (torchvision ``Resize(int)``; ``keep_aspect=False`` gives the PyTorch port's square
  ``Resize((size, size))``), then a ``crop_size`` square is cut at an offset drawn from an RNG
  seeded by ``(seed, stream, k)`` (torchvision ``RandomCrop``);
* a record that cannot be decoded is skipped: sample ``k`` then takes another record drawn from
  ``(seed, stream, k, attempt)``. Skips are counted (`ImageStream.skipped`) and logged, never fatal.

So the data order needs no state beyond the global sample position: resuming at position ``p``
reproduces exactly the batches an uninterrupted run would have seen, with any number of hosts or
loader threads. Host ``i`` of ``n`` loads samples ``[p + i*b, p + (i+1)*b)`` of each global batch
of ``n*b`` (its shard); batches are uint8 NHWC, converted to float in [0, 1] on the device.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import os
import pathlib
import re
import sys
import threading
import warnings
from typing import Any, Iterator, Sequence

import absl.logging as logging
import numpy as np
from PIL import Image, ImageOps

from adain_jax.io import images as image_io
from train.errors import SetupError

CONTENT_STREAM, STYLE_STREAM = 0, 1  # salts of the two streams' RNGs
MAX_ATTEMPTS = 64  # records tried for one sample before giving up
MAX_WARNINGS = 20  # undecodable-image warnings logged per stream (all are counted)

# Pillow registers its plugins lazily, which is not thread-safe (a loader thread can see a half-filled
# registry and fail with KeyError: 'MPO'); register them all now, before any thread starts.
Image.init()
# Decoders Pillow may try (as in adain_jax.image_io: keeps Pillow from handing a file to Ghostscript).
# Older Pillows open phone JPEGs as a separate "MPO" format, Pillow >= 13 within "JPEG".
_READ_FORMATS = tuple(f for f in ("JPEG", "MPO", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM") if f in Image.ID)
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[\w+.-]+)?(:\d+\.\d+\.\d+)?$")


def hide_accelerators_from_tensorflow() -> None:
    """If TensorFlow got imported (TFDS imports it lazily when it is installed), keep it off the GPUs/TPUs.

    JAX owns the accelerators; a TensorFlow that initialises them would take their memory. Nothing
    here imports TensorFlow itself (that alone takes 13-29 s and 1.3 GB).
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except Exception:  # already initialised, or no such device type: nothing more to do
            pass


# --------------------------------------------------------------------------------------------------
# Sources: a TFDS data source plus what is needed to read images from it.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """Random-access records holding one encoded (or decoded) image each."""

    spec: str  # what the config said: a folder or a TFDS name
    records: Sequence[dict]  # a TFDS data source
    image_key: str
    file_name_key: str | None  # for messages about undecodable records
    fingerprint: str  # identifies the data (and so the data order) for resume checks

    def __len__(self) -> int:
        return len(self.records)


def is_folder_spec(spec: str) -> bool:
    """A folder if it exists as one or looks like a path; otherwise a TFDS name such as ``coco/2017``."""
    if os.path.isdir(os.path.expanduser(spec)):
        return True
    return spec.startswith(("/", ".", "~")) or os.sep in spec and not _TFDS_NAME.match(spec)


def open_source(spec: str, *, kind: str, data_dir: str | os.PathLike, split: str = "train",
                image_key: str = "image", is_builder: bool = True) -> ImageSource:
    """Open ``spec`` (a folder or a TFDS name) as an `ImageSource`; SetupError if it cannot be.

    ``kind`` ("content" or "style") only names the config key in messages. ``is_builder``: whether
    this process may build a folder's dataset (on multi-host runs only process 0 builds, the others
    call again after a barrier).
    """
    import tensorflow_datasets as tfds

    spec = str(spec).strip()
    if not spec:
        raise SetupError(f"config.{kind} is empty: give a folder of images or a TFDS dataset name")
    decoders = None
    if is_folder_spec(spec):
        from train import folder_dataset

        folder = pathlib.Path(spec).expanduser().absolute()
        files = folder_dataset.list_image_files(folder)  # SetupError if missing or empty
        if is_builder:
            builder = folder_dataset.prepare(folder, data_dir)
        else:
            builder = folder_dataset.AdainImageFolder(folder=folder, files=files, data_dir=os.fspath(data_dir))
            if not builder.is_prepared():
                raise SetupError(f"{folder}: its TFDS dataset is not prepared in {data_dir} (process 0 builds it; "
                                 "is config.tfds_data_dir on storage all hosts share?)")
        split, image_key, name_key = folder_dataset.SPLIT, folder_dataset.IMAGE_KEY, folder_dataset.FILE_NAME_KEY
        fp = f"folder:{builder.builder_config.name}"
    else:
        if not _TFDS_NAME.match(spec):
            raise SetupError(f"{spec}: no such folder, and not a TFDS dataset name (like coco/2017)")
        try:
            # From the prepared files alone: no dataset code runs, so datasets whose code needs
            # TensorFlow (coco does) still load without it.
            builder = tfds.core.read_only_builder.builder_from_files(spec, data_dir=os.fspath(data_dir))
        except Exception as e:  # DatasetNotFoundError and friends
            raise SetupError(
                f"{spec}: no such folder, and no prepared TFDS dataset of that name in {data_dir} "
                f"({type(e).__name__}). Prepare it once in the array_record format, e.g. `tfds build {spec} "
                f"--file_format=array_record --data_dir={data_dir}` (building coco needs TensorFlow, reading "
                "it does not), or pass a folder of images") from None
        name_key = next((k for k in ("image/filename", "file_name", "filename") if k in builder.info.features), None)
        fp = f"tfds:{builder.info.full_name}"
        if image_key not in builder.info.features:
            raise SetupError(f"{spec}: has no feature {image_key!r} (features: {', '.join(builder.info.features)}); "
                             f"set config.image_key")
    if image_key in builder.info.features and isinstance(builder.info.features[image_key], tfds.features.Image):
        decoders = {image_key: tfds.decode.SkipDecoding()}  # Pillow decodes, so failures can be skipped
    if split not in builder.info.splits:
        raise SetupError(f"{spec}: no split {split!r} (splits: {', '.join(builder.info.splits)})")
    try:
        records = builder.as_data_source(split=split, decoders=decoders)
    except Exception as e:
        raise SetupError(f"{spec}: cannot read split {split!r} as a data source ({type(e).__name__}: {e}); "
                         "it must be in the array_record format") from None
    if len(records) == 0:
        raise SetupError(f"{spec}: split {split!r} is empty")
    hide_accelerators_from_tensorflow()
    return ImageSource(spec, records, image_key, name_key, f"{fp}/{split}/{len(records)}")


# --------------------------------------------------------------------------------------------------
# One image: decode, resize, crop.
# --------------------------------------------------------------------------------------------------


def decode_rgb(data) -> Image.Image:
    """Encoded bytes (or an already decoded uint8 array) -> 8-bit RGB Pillow image.

    Like `adain_jax.io.images.open_rgb`: EXIF orientation applied, grey/palette/CMYK/16-bit/alpha
    converted to RGB (alpha composited over white). Raises ValueError (or OSError) if undecodable.
    """
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
        # Already decoded (a dataset read without SkipDecoding, or tfds.testing.mock_data).
        if data.ndim == 3 and data.shape[-1] == 1:
            data = data[..., 0]
        image = Image.fromarray(data)
        return image if image.mode == "RGB" else Image.fromarray(image_io.to_uint8(image_io.to_array(image)), "RGB")
    if isinstance(data, np.ndarray) and data.ndim == 0:
        data = data.item()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected encoded image bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(bytes(data)), formats=_READ_FORMATS)
        image.load()
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block does not make the pixels unusable
        pass
    if image.mode != "RGB":
        # image_io's public conversion (to float in [0, 1] and back) is exact for 8-bit values.
        image = Image.fromarray(image_io.to_uint8(image_io.to_array(image)), "RGB")
    return image


def resize_and_crop(image: Image.Image, *, size: int, crop: int, keep_aspect: bool,
                    rng: np.random.Generator) -> np.ndarray:
    """Shorter side to ``size`` (or ``size`` x ``size``), then a random ``crop`` square -> uint8 HWC."""
    if keep_aspect:
        image = image_io.resize_shorter_side(image, size)
    elif image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    w, h = image.size
    # torchvision RandomCrop: top in [0, h - crop], left in [0, w - crop], inclusive.
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# A stream: sample index -> image, deterministic and thread-safe.
# --------------------------------------------------------------------------------------------------


class ImageStream:
    """Infinite shuffled epochs of one source; ``sample(k)`` is a pure function of ``(seed, k)``."""

    def __init__(self, source: ImageSource, *, seed: int, stream: int, image_size: int, crop_size: int,
                 keep_aspect: bool = True):
        if crop_size > image_size:
            raise SetupError(f"config.crop_size ({crop_size}) must not exceed config.image_size ({image_size})")
        self.source = source
        self.seed, self.stream = int(seed), int(stream)
        self.image_size, self.crop_size, self.keep_aspect = int(image_size), int(crop_size), bool(keep_aspect)
        self._lock = threading.Lock()
        self._perms: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.skipped = 0  # undecodable records met (each time one is met)
        self._warned: set[int] = set()

    def _permutation(self, epoch: int) -> np.ndarray:
        with self._lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, self.stream, 0, epoch]).permutation(len(self.source))
                self._perms[epoch] = perm
                while len(self._perms) > 2:  # batches straddle at most two epochs
                    self._perms.popitem(last=False)
            return perm

    def record_index(self, k: int) -> int:
        """The record that sample ``k`` starts from (before any skip)."""
        n = len(self.source)
        return int(self._permutation(k // n)[k % n])

    def _note_skip(self, index: int, error: Exception) -> None:
        with self._lock:
            self.skipped += 1
            first = index not in self._warned and len(self._warned) < MAX_WARNINGS
            if first:
                self._warned.add(index)
        if first:
            name = index
            if self.source.file_name_key:
                try:
                    name = self.source.records[index][self.source.file_name_key]
                    name = name.decode() if isinstance(name, bytes) else str(name)
                except Exception:
                    pass
            logging.warning("%s: skipping undecodable image %s (%s: %s)", self.source.spec, name,
                            type(error).__name__, " ".join(str(error).split()))

    def sample(self, k: int) -> np.ndarray:
        """uint8 (crop_size, crop_size, 3) image of sample ``k``."""
        index = self.record_index(k)
        crop_rng = np.random.default_rng([self.seed, self.stream, 1, k])
        for attempt in range(MAX_ATTEMPTS):
            if attempt:  # replace an undecodable record by a deterministic random other one
                index = int(np.random.default_rng([self.seed, self.stream, 2, k, attempt]).integers(len(self.source)))
            try:
                image = decode_rgb(self.source.records[index][self.source.image_key])
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as e:  # corrupt, truncated, unsupported, too large, ...
                self._note_skip(index, e)
                continue
            return resize_and_crop(image, size=self.image_size, crop=self.crop_size,
                                   keep_aspect=self.keep_aspect, rng=crop_rng)
        raise RuntimeError(f"{self.source.spec}: none of {MAX_ATTEMPTS} records tried for sample {k} could be "
                           "decoded as an image; is the dataset corrupt?")


# --------------------------------------------------------------------------------------------------
# Batches: this host's share of each global batch, loaded ahead by a thread pool.
# --------------------------------------------------------------------------------------------------


class BatchLoader:
    """Iterator of ``{"content", "style"}`` uint8 (local_batch, crop, crop, 3) batches.

    Batch ``i`` holds global samples ``position + i * global_batch + process_index * local_batch``
    onwards. ``prefetch`` batches are decoded ahead by ``num_workers`` threads (Pillow releases the
    GIL while decoding and resizing). Use as a context manager, or call `close`.
    """

    def __init__(self, content: ImageStream, style: ImageStream, *, global_batch: int, position: int = 0,
                 process_index: int = 0, process_count: int = 1, num_workers: int = 4, prefetch: int = 2):
        if global_batch % process_count:
            raise SetupError(f"config.batch_size ({global_batch}) must be divisible by the number of hosts "
                             f"({process_count})")
        self.content, self.style = content, style
        self.global_batch = int(global_batch)
        self.local_batch = self.global_batch // process_count
        self.offset = process_index * self.local_batch
        self.position = int(position)  # global sample index of the next batch handed out
        self._next_submit = self.position
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="images")
        self._pending: collections.deque = collections.deque()
        self._prefetch = max(1, int(prefetch))

    def _submit(self) -> None:
        start = self._next_submit + self.offset
        ks = range(start, start + self.local_batch)
        self._pending.append(([self._pool.submit(self.content.sample, k) for k in ks],
                              [self._pool.submit(self.style.sample, k) for k in ks]))
        self._next_submit += self.global_batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while len(self._pending) < self._prefetch:
            self._submit()
        content, style = self._pending.popleft()
        self._submit()
        batch = {"content": np.stack([f.result() for f in content]),
                 "style": np.stack([f.result() for f in style])}
        self.position += self.global_batch
        return batch

    @property
    def skipped(self) -> int:
        """Undecodable images met so far by this host (content and style)."""
        return self.content.skipped + self.style.skipped

    def close(self) -> None:
        for futures in self._pending:
            for f in (*futures[0], *futures[1]):
                f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "BatchLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fixed_images(stream: ImageStream, count: int, size: int) -> np.ndarray:
    """The first ``count`` decodable records of a source, shorter side ``size``, centre-cropped: uint8.

    Used for the sample grid: the same images at every step and on every host.
    """
    out, index = [], 0
    n = len(stream.source)
    while len(out) < min(count, n) and index < n:
        try:
            image = decode_rgb(stream.source.records[index][stream.source.image_key])
        except Exception:
            index += 1
            continue
        image = image_io.center_crop(image_io.resize_shorter_side(image, size), size)
        out.append(np.asarray(image, dtype=np.uint8))
        index += 1
    if not out:
        raise RuntimeError(f"{stream.source.spec}: no decodable image for the sample grid")
    return np.stack(out)


def create_streams(config, data_dir) -> tuple[ImageStream, ImageStream]:
    """Open ``config.content`` / ``config.style`` and wrap them in streams (multi-host aware)."""
    import jax

    def open_both(is_builder):
        return [open_source(getattr(config, kind), kind=kind, data_dir=data_dir, split=config.get(f"{kind}_split", "train"),
                            image_key=config.get("image_key", "image"), is_builder=is_builder)
                for kind in ("content", "style")]

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        if jax.process_index() == 0:
            sources = open_both(True)
        multihost_utils.sync_global_devices("adain_jax: folder datasets prepared")
        if jax.process_index() != 0:
            sources = open_both(False)
    else:
        sources = open_both(True)
    kwargs = dict(seed=config.seed, image_size=config.image_size, crop_size=config.crop_size,
                  keep_aspect=config.get("keep_aspect", True))
    return (ImageStream(sources[0], stream=CONTENT_STREAM, **kwargs),
            ImageStream(sources[1], stream=STYLE_STREAM, **kwargs))


def describe(stream: ImageStream) -> dict[str, Any]:
    return {"spec": stream.source.spec, "records": len(stream.source), "fingerprint": stream.source.fingerprint}
