"""The web app's stylizer: one thread behind a bounded queue, the only caller of the jitted functions.

Requests are decoded, checked against the limits and stylized on this thread, in arrival order. The
thread takes up to ``max_batch`` waiting requests at a time (`batching.BatchQueue`); those with one
style and no other control whose contents have the same size run as one batch through
`transfer.stylize_with_moments_sharded` (split over every local device), padded to ``max_batch``
images so that a request gets the same bytes alone or in a crowd (`batching` says why). Every other
request runs alone through `runner.Stylizer`, as ``adain-jax stylize`` does (auto-tiling an image that
would not fit in memory). Memory is that of one batch however many clients wait: a waiting request
holds only its uploaded bytes, and a full queue answers 503.

The work is the CLI's: uploads go through the same decoding (`image_io.decode`, the decompression-bomb
guard included), the same resize and the same quantisation as ``adain-jax stylize --ext png``. Style
statistics come from the shared `cache.StyleCache`, so a popular style is encoded once. Before it
takes requests the thread compiles the programs of the ``warm`` sizes (or loads them from the
persistent cache); `ready` is set then. Any failure is answered to its own request (a failed batch
to each of its requests); the thread never dies of one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import logging
import os
import tempfile
import threading

import numpy as np
from PIL import Image, UnidentifiedImageError

from adain_jax import controls, runner, transfer
from adain_jax.io import images as image_io
from adain_jax.io import masks as mask_io
from adain_jax.precision import Precision
from adain_jax.serve import batching, request
from adain_jax.serve.cache import StyleCache
from adain_jax.serve.metrics import Metrics
from adain_jax.serve.request import Job, RequestError, Upload

log = logging.getLogger("adain_jax.serve")


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes, as ``adain-jax stylize --ext png`` writes them."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


class _UploadStylizer(runner.Stylizer):
    """`runner.Stylizer` whose "paths" are `Upload`s: images decoded from request bytes, with style
    statistics kept across requests in the worker's cache."""

    def __init__(self, worker: Worker, options):
        super().__init__(worker.weights, content_size=options.content_size, style_size=options.style_size,
                         crop=options.crop, tile="auto", precision=worker.precision)
        self._worker = worker

    def content(self, upload: Upload) -> np.ndarray:
        return self._worker.load(upload, self.content_size, self.crop)

    def style(self, upload: Upload) -> np.ndarray:
        if upload not in self._styles:
            self._styles[upload] = self._worker.load(upload, self.style_size, self.crop)
        return self._styles[upload]

    def moments(self, upload: Upload):
        return self._worker.cache.moments(upload, self.style_size, self.crop,
                                          lambda: transfer.style_moments(self.weights, self.style(upload)[None],
                                                                         precision=self.precision))


@dataclasses.dataclass
class _Batchable:
    """A request that can share a batch: its content, its style's statistics, its alpha."""

    content: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    alpha: float


class Worker:
    """Runs `Job`s on one thread: ``submit(job)`` -> a Future of the result's (H, W, 3) uint8 pixels."""

    def __init__(self, weights, *, max_size: int = 1024, queue_size: int = 32, max_batch: int = 1,
                 max_wait: float = 0.005, cache: StyleCache | None = None, metrics: Metrics | None = None,
                 warm: tuple[tuple[int, int], ...] = (), precision: Precision = "float32"):
        """``max_size``: the largest shorter side of a resized image (content or style); an image's
        pixels are also capped at ``4 * max_size**2`` (a panorama). ``queue_size``: requests that may
        wait; ``max_batch``/``max_wait``: the largest batch, and how long (seconds) the first request
        of a batch waits for others; ``cache``: style statistics (default: 64 MiB); ``warm``:
        (height, width) content sizes whose programs are compiled before `ready` is set; ``precision``:
        of the convolutions (`adain_jax.precision`)."""
        self.weights = weights
        self.precision = precision
        self.max_size, self.max_pixels = int(max_size), 4 * int(max_size) ** 2
        self.queue_size, self.max_batch = int(queue_size), max(1, int(max_batch))
        self.metrics = metrics if metrics is not None else Metrics()
        self.cache = cache if cache is not None else StyleCache(64 * 2**20)
        self.warm_sizes = tuple((int(h), int(w)) for h, w in warm)
        self._queue = batching.BatchQueue(queue_size, self.max_batch, max_wait)
        self.metrics.queue_depth.set_function(lambda: len(self._queue))
        self.metrics.cache_bytes.set_function(lambda: self.cache.nbytes)
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ queue

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="adain-jax-serve-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the running batch, cancel the waiting requests, end the thread."""
        for _, future in self._queue.close():
            future.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._queue.put((job, future))
        except batching.Closed:
            raise RequestError(503, "the server is shutting down") from None
        except batching.Full:
            raise RequestError(503, f"busy: {len(self._queue)} requests are waiting; try again shortly") from None
        return future

    def _main(self) -> None:
        try:
            self.warm(self.warm_sizes)
        except Exception:  # a failed warm-up costs start-up time, never the server
            log.exception("warming up failed; programs will compile on first use")
        self.ready.set()
        while True:
            items = self._queue.take()
            if not items:
                return
            self._run(items)

    # ------------------------------------------------------------------ work

    @staticmethod
    def _as_request_error(e: Exception) -> RequestError:
        if isinstance(e, RequestError):
            return e
        if isinstance(e, MemoryError):
            return RequestError(503, "out of memory for this request; try a smaller content_size or style_size")
        log.exception("stylize request failed", exc_info=e)  # one bad request must never stop the server
        return RequestError(500, f"internal error: {type(e).__name__}: {e}")

    def _answer(self, futures, compute) -> None:
        """Sets each future to its item of ``compute()`` (a list, one per future), or all to its error."""
        try:
            results = compute()
        except Exception as e:  # noqa: BLE001 - answered to the requests (500 if unexpected); the thread goes on
            error = self._as_request_error(e)
            for future in futures:
                future.set_exception(error)
            return
        for future, result in zip(futures, results, strict=True):
            future.set_result(result)

    def _run(self, items) -> None:
        """One `take` of the queue: prepare each request, then run the batches and the singles."""
        prepared = []  # (future, job, _Batchable or None to run alone)
        for job, future in items:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                prepared.append((future, job, self._batchable(job)))
            except Exception as e:  # noqa: BLE001 - answered to its own request (500 if unexpected); the rest go on
                future.set_exception(self._as_request_error(e))
        for run in batching.group(prepared, lambda p: None if p[2] is None else p[2].content.shape, self.max_batch):
            futures = [future for future, _, _ in run]
            self.metrics.batch_size.observe(len(run))
            if run[0][2] is None:
                self._answer(futures, lambda run=run: [self.process(run[0][1])])
            else:
                self._answer(futures, lambda run=run: self._stylize_batch([b for _, _, b in run]))

    def _batchable(self, job: Job) -> _Batchable | None:
        """The decoded content and style statistics of a request that can share a batch, else None.

        Whether it can depends only on the request (one style; no interpolation, mask or colour
        preservation; a decoder without style skips; a size that fits untiled in a full batch), never
        on what else is waiting, so a request takes the same path alone or in a crowd."""
        options = job.options
        if (len(job.styles) != 1 or job.mask is not None or options.style_weights is not None
                or options.preserve_color):
            return None
        stylizer = _UploadStylizer(self, options)
        if stylizer.variant.style_skips:
            return None
        content = stylizer.content(job.content)
        if not self.tile_free(*content.shape[:2]):
            return None
        mean, std = stylizer.moments(job.styles[0])
        return _Batchable(content, np.asarray(mean), np.asarray(std), float(options.alpha))

    def _stylize_batch(self, items: list[_Batchable]) -> list[np.ndarray]:
        """Same-size requests -> their uint8 pixels, through the one program of ``max_batch`` images."""
        n = len(items)
        contents = batching.pad(np.stack([b.content for b in items]).astype(np.float32), self.max_batch)
        mean = batching.pad(np.concatenate([b.mean for b in items]).astype(np.float32), self.max_batch)
        std = batching.pad(np.concatenate([b.std for b in items]).astype(np.float32), self.max_batch)
        alpha = batching.pad(np.asarray([b.alpha for b in items], np.float32), self.max_batch)
        out = np.asarray(transfer.stylize_with_moments_sharded(self.weights, contents, mean, std, alpha=alpha,
                                                               precision=self.precision))
        return [image_io.to_uint8(out[i]) for i in range(n)]

    def warm(self, sizes) -> None:
        """Compile (or load from the persistent cache) the programs a request of each (height, width)
        content size and a style of that size would need: the style encoder and the batch program."""
        if self.weights is None:
            return
        for height, width in sizes:
            zeros = np.zeros((1, height, width, 3), np.float32)
            mean, std = transfer.style_moments(self.weights, zeros, precision=self.precision)
            if self.tile_free(height, width):
                self._stylize_batch([_Batchable(zeros[0], np.asarray(mean), np.asarray(std), 1.0)])
            log.info("warmed %dx%d", height, width)

    def tile_free(self, height: int, width: int) -> bool:
        """True when a full batch of this size runs untiled (it is then batched)."""
        return not runner.Stylizer(self.weights, tile="auto").tile_for(self.max_batch, height, width)

    def decode(self, upload: Upload) -> Image.Image:
        try:
            return image_io.decode(upload.data, upload.label)
        except image_io.ImageError as e:
            cause = e.__cause__
            if isinstance(cause, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
                # The library's advice (raise PIL.Image.MAX_IMAGE_PIXELS) is for the server's owner.
                raise RequestError(413, f"{upload.label}: {e.problem.split(';')[0]}") from None
            if isinstance(cause, UnidentifiedImageError) or not upload.data:
                raise RequestError(415, f"{upload.label}: {e.problem}") from None
            raise RequestError(400, f"{upload.label}: {e.problem}") from None

    def load(self, upload: Upload, size: int, crop: bool) -> np.ndarray:
        """`image_io.load_image` on uploaded bytes, refusing results over the size limits."""
        image = self.decode(upload)
        width, height = image_io.resized_size(*image.size, size)
        if min(width, height) > self.max_size or width * height > self.max_pixels:
            raise RequestError(413, f"{upload.label}: {width}x{height} after resizing is over this server's limit "
                                    f"({self.max_size} pixels on the shorter side, {self.max_pixels} pixels in all; "
                                    f"adain-jax serve --max-size); send a smaller size field")
        image = image_io.resize_shorter_side(image, size)
        if crop:
            image = image_io.center_crop(image, size)
        return image_io.to_array(image)

    def _masks(self, mask: Upload, num_styles: int, height: int, width: int) -> np.ndarray:
        # The mask readers take paths; the bytes live in a private folder for the call only.
        with tempfile.TemporaryDirectory(prefix="adain-jax-serve-") as folder:
            path = os.path.join(folder, "mask")
            with open(path, "wb") as handle:
                handle.write(mask.data)
            try:
                return mask_io.masks_from_file(path, num_styles, height, width)
            except image_io.ImageError as e:
                status = 415 if isinstance(e.__cause__, UnidentifiedImageError) else 400
                raise RequestError(status, f"{mask.label}: {e.problem.split(';')[0]}") from None

    def process(self, job: Job) -> np.ndarray:
        """One request on its own -> the uint8 pixels ``adain-jax stylize --ext png`` would write."""
        options = job.options
        stylizer = _UploadStylizer(self, options)
        content = stylizer.content(job.content)
        masks = None if job.mask is None else self._masks(job.mask, len(job.styles), *content.shape[:2])
        try:
            out = stylizer.run(content, job.styles, alpha=options.alpha, style_weights=job.controls().weights_array(),
                               preserve_color=options.preserve_color, masks=masks)
        except controls.ControlError as e:  # e.g. colour preservation of combined styles of unequal sizes
            raise RequestError(400, request.field_message(e)) from None
        return image_io.to_uint8(out)
