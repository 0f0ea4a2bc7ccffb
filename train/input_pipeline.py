"""Image streams and batches: an `ImageSource`'s records in, host-local uint8 batches out.

Every sample is a pure function of ``(seed, stream, sample index)``:

* sample ``k`` of a stream is record ``perm_e[k mod N]`` with ``e = k // N`` and ``perm_e`` a
  permutation of the N records seeded by ``(seed, stream, e)``: an infinite stream of shuffled epochs;
* the image is decoded by `adain_jax.io.images.decode` (as ``open_rgb`` reads files: EXIF orientation,
  any mode to RGB), its shorter side resized to ``config.image_size`` keeping the aspect ratio
  (torchvision ``Resize(int)``; ``keep_aspect=False`` gives the PyTorch port's square
  ``Resize((size, size))``), then a ``crop_size`` square is cut at an offset drawn from an RNG
  seeded by ``(seed, stream, k)`` (torchvision ``RandomCrop``);
* a record that cannot be decoded is skipped: sample ``k`` then takes another record drawn from
  ``(seed, stream, k, attempt)``. Skips are counted (`ImageStream.skipped`) and logged, never fatal.

So the data order needs no state beyond the global sample position: resuming at position ``p``
reproduces exactly the batches an uninterrupted run would have seen, with any number of hosts or
loader threads. Host ``i`` of ``n`` loads samples ``[p + i*b, p + (i+1)*b)`` of each global batch
of ``n*b`` (its shard); batches are uint8 NHWC, converted to float in [0, 1] on the device.
Where the records come from (a folder or a TFDS name) is `train.data_sources`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Iterator

import absl.logging as logging
import numpy as np
from PIL import Image

from adain_jax.io import images as image_io
from train import data_sources
from train.data_sources import ImageSource
from train.errors import SetupError

CONTENT_STREAM, STYLE_STREAM = 0, 1  # salts of the two streams' RNGs
MAX_ATTEMPTS = 64  # records tried for one sample before giving up
MAX_WARNINGS = 20  # undecodable-image warnings logged per stream (all are counted)

# Pillow registers its plugins lazily, which is not thread-safe (a loader thread can see a half-filled
# registry and fail with a KeyError); register them all now, before any loader thread starts.
Image.init()


# --------------------------------------------------------------------------------------------------
# One image: decode, resize, crop.
# --------------------------------------------------------------------------------------------------


def record_name(source: ImageSource, index: int, record=None) -> str:
    """The record's file name where the dataset has one, else ``record <index>``: for messages."""
    if source.file_name_key:
        try:
            name = (source.records[index] if record is None else record)[source.file_name_key]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # a name is only for the message
            pass
    return f"record {index}"


def decode_record(source: ImageSource, index: int) -> Image.Image:
    """Record ``index`` of ``source`` as an 8-bit RGB image; `image_io.ImageError` naming it if undecodable."""
    record = source.records[index]
    data = record[source.image_key]
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
        # Already decoded (a dataset read without SkipDecoding, or tfds.testing.mock_data): only the
        # mode conversion is left, image_io's (to_array converts to RGB; exact for 8-bit values).
        image = Image.fromarray(data[..., 0] if data.ndim == 3 and data.shape[-1] == 1 else data)
        return image if image.mode == "RGB" else Image.fromarray(image_io.to_uint8(image_io.to_array(image)), "RGB")
    if isinstance(data, np.ndarray) and data.ndim == 0:
        data = data.item()
    return image_io.decode(data, record_name(source, index, record))


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
            # An ImageError names the record itself; anything else gets the record's name added.
            message = str(error) if isinstance(error, image_io.ImageError) else \
                f"{record_name(self.source, index)}: {type(error).__name__}: {error}"
            logging.warning("%s: skipping undecodable image %s", self.source.spec, " ".join(message.split()))

    def sample(self, k: int) -> np.ndarray:
        """uint8 (crop_size, crop_size, 3) image of sample ``k``."""
        index = self.record_index(k)
        crop_rng = np.random.default_rng([self.seed, self.stream, 1, k])
        for attempt in range(MAX_ATTEMPTS):
            if attempt:  # replace an undecodable record by a deterministic random other one
                index = int(np.random.default_rng([self.seed, self.stream, 2, k, attempt]).integers(len(self.source)))
            try:
                image = decode_record(self.source, index)
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
    """Iterator of ``{"content", "style"}`` (or the given keys') uint8 (local_batch, crop, crop, 3) batches.

    Batch ``i`` holds global samples ``position + i * global_batch + process_index * local_batch``
    onwards. ``prefetch`` batches are decoded ahead by ``num_workers`` threads (Pillow releases the
    GIL while decoding and resizing). Use as a context manager, or call `close`.
    """

    def __init__(self, content: ImageStream | dict[str, ImageStream], style: ImageStream | None = None, *,
                 global_batch: int, position: int = 0, process_index: int = 0, process_count: int = 1,
                 num_workers: int = 4, prefetch: int = 2):
        """``content`` and ``style`` streams, or one dict ``{batch key: stream}`` (e.g. ``{"images": s}``)."""
        if global_batch % process_count:
            raise SetupError(f"config.batch_size ({global_batch}) must be divisible by the number of hosts "
                             f"({process_count})")
        self.streams = dict(content) if isinstance(content, dict) else {"content": content, "style": style}
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
        self._pending.append({name: [self._pool.submit(stream.sample, k) for k in ks]
                              for name, stream in self.streams.items()})
        self._next_submit += self.global_batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while len(self._pending) < self._prefetch:
            self._submit()
        futures = self._pending.popleft()
        self._submit()
        batch = {name: np.stack([f.result() for f in fs]) for name, fs in futures.items()}
        self.position += self.global_batch
        return batch

    @property
    def skipped(self) -> int:
        """Undecodable images met so far by this host (all streams)."""
        return sum(stream.skipped for stream in self.streams.values())

    def close(self) -> None:
        for futures in self._pending:
            for fs in futures.values():
                for f in fs:
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
    out = []
    for index in range(len(stream.source)):
        if len(out) == count:
            break
        try:
            image = decode_record(stream.source, index)
        except Exception:  # skipped here as in the stream
            continue
        out.append(np.asarray(image_io.center_crop(image_io.resize_shorter_side(image, size), size), dtype=np.uint8))
    if not out:
        raise RuntimeError(f"{stream.source.spec}: no decodable image for the sample grid")
    return np.stack(out)


def create_streams(config, data_dir) -> tuple[ImageStream, ImageStream]:
    """The content and style streams of ``config``, its sources opened by `data_sources.open_sources`."""
    sources = data_sources.open_sources(config, data_dir)
    kwargs = dict(seed=config.seed, image_size=config.image_size, crop_size=config.crop_size,
                  keep_aspect=config.keep_aspect)
    return (ImageStream(sources[0], stream=CONTENT_STREAM, **kwargs),
            ImageStream(sources[1], stream=STYLE_STREAM, **kwargs))


def create_loader(config, content: ImageStream, style: ImageStream, position: int) -> "BatchLoader":
    """This host's `BatchLoader` of ``config``'s global batch, starting at global sample ``position``."""
    import jax

    return BatchLoader(content, style, global_batch=config.batch_size, position=position,
                       process_index=jax.process_index(), process_count=jax.process_count(),
                       num_workers=config.num_workers, prefetch=config.prefetch)
