"""The web app's stylizer: one thread behind a bounded queue, the only caller of the jitted functions.

Requests are decoded, checked against the limits and stylized one at a time, in arrival order, so
memory is that of one request however many clients wait (each waiting request holds only its
uploaded bytes, and the queue is bounded: a full queue answers 503). The work is the CLI's: uploads
go through the same decoding (`image_io.decode`, the decompression-bomb guard included), the same
resize, the same `runner.Stylizer` (auto-tiling an image that would not fit in memory) and the same
quantisation as ``adain-jax stylize --ext png``.

Compiled programs live in the jitted functions of `adain_jax.transfer`, so they are shared by every
request (one per image size and control set), and the statistics of recently used style uploads
are kept (keyed by the bytes' hash), so moving the alpha slider re-encodes only the content. Any
failure is answered to its own request; the thread never dies of one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import logging
import os
import tempfile
import threading

import numpy as np
from PIL import Image, UnidentifiedImageError

from adain_jax import runner, transfer
from adain_jax.io import images as image_io
from adain_jax.serve.request import Job, RequestError, Upload

log = logging.getLogger("adain_jax.serve")


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) `image_io.resize_shorter_side` gives, computed without resizing."""
    if size == 0:
        return width, height
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


class _UploadStylizer(runner.Stylizer):
    """`runner.Stylizer` whose "paths" are `Upload`s: images decoded from request bytes, with style
    statistics kept across requests in the worker's cache."""

    def __init__(self, worker: "Worker", options):
        super().__init__(worker.weights, content_size=options.content_size, style_size=options.style_size,
                         crop=options.crop, tile="auto")
        self._worker = worker

    def content(self, upload: Upload) -> np.ndarray:
        return self._worker.load(upload, self.content_size, self.crop)

    def style(self, upload: Upload) -> np.ndarray:
        if upload not in self._styles:
            self._styles[upload] = self._worker.load(upload, self.style_size, self.crop)
        return self._styles[upload]

    def moments(self, upload: Upload):
        return self._worker.cached_moments((upload.digest, self.style_size, self.crop),
                                           lambda: transfer.style_moments(self.weights, self.style(upload)[None]))


class Worker:
    """Runs `Job`s on one thread: ``submit(job)`` -> a Future of the result's PNG bytes."""

    def __init__(self, weights, *, max_size: int = 1024, queue_size: int = 32, style_cache: int = 64):
        """``max_size``: the largest shorter side of a resized image (content or style); an image's
        pixels are also capped at ``4 * max_size**2`` (a panorama). ``queue_size``: requests that may
        wait; ``style_cache``: style statistics kept (each two 512-float vectors)."""
        self.weights = weights
        self.max_size, self.max_pixels = int(max_size), 4 * int(max_size) ** 2
        self.queue_size = int(queue_size)
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._moments: collections.OrderedDict = collections.OrderedDict()
        self._style_cache = int(style_cache)

    # ------------------------------------------------------------------ queue

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="adain-jax-serve-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the running request, cancel the waiting ones, end the thread."""
        with self._cond:
            self._stopping = True
            while self._queue:
                self._queue.popleft()[1].cancel()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise RequestError(503, "the server is shutting down")
            if len(self._queue) >= self.queue_size:
                raise RequestError(503, f"busy: {len(self._queue)} requests are waiting; try again shortly")
            self._queue.append((job, future))
            self._cond.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue:
                    return
                job, future = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self.process(job))
            except RequestError as e:
                future.set_exception(e)
            except MemoryError:
                future.set_exception(RequestError(503, "out of memory for this request; try a smaller "
                                                       "content_size or style_size"))
            except Exception as e:  # one bad request must never stop the server
                log.exception("stylize request failed")
                future.set_exception(RequestError(500, f"internal error: {type(e).__name__}: {e}"))

    # ------------------------------------------------------------------ work

    def cached_moments(self, key, compute):
        if key in self._moments:
            self._moments.move_to_end(key)
            return self._moments[key]
        value = compute()
        self._moments[key] = value
        while len(self._moments) > self._style_cache:
            self._moments.popitem(last=False)
        return value

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
        width, height = resized_size(*image.size, size)
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
                return runner.masks_from_file(path, num_styles, height, width)
            except image_io.ImageError as e:
                status = 415 if isinstance(e.__cause__, UnidentifiedImageError) else 400
                raise RequestError(status, f"{mask.label}: {e.problem.split(';')[0]}") from None

    def process(self, job: Job) -> bytes:
        """One request -> the PNG bytes ``adain-jax stylize --ext png`` would write."""
        options = job.options
        stylizer = _UploadStylizer(self, options)
        content = stylizer.content(job.content)
        masks = None if job.mask is None else self._masks(job.mask, len(job.styles), *content.shape[:2])
        weights = None if options.style_weights is None else np.asarray(options.style_weights, np.float32)
        try:
            out = stylizer.run(content, job.styles, alpha=options.alpha, style_weights=weights,
                               preserve_color=options.preserve_color, masks=masks)
        except ValueError as e:  # the runner's refusals, e.g. colour preservation of unequal styles
            message = str(e).replace("--preserve-color", "preserve_color").replace("--crop", "crop")
            raise RequestError(400, message) from None
        buffer = io.BytesIO()
        Image.fromarray(image_io.to_uint8(out), "RGB").save(buffer, format="PNG")
        return buffer.getvalue()
