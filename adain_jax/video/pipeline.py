"""Video files in, stylized video files out: `stylize_video`, streaming and batched.

Three stages overlap: a reader thread decodes frames (and passes the audio along in demux order),
the calling thread runs the jitted batch program on the devices, and a writer thread encodes. They
hand over through queues of at most two batches each, so memory is flat in the video's length. The
style is encoded once (`transfer.style_moments`), unless it is a video (one style frame per content
frame) or colours are preserved (CORAL depends on each frame). Every batch has the same shape - the
last one is padded by repeating its last frame - so the program compiles once; the batch is split
over every local device (`parallel.batch_sharded`). Nothing here parses arguments or prints, except
the progress bar.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import queue
import sys
import threading
import time
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from adain_jax import parallel, runner, transfer
from adain_jax.io import images as image_io
from adain_jax.model import variants
from adain_jax.video import temporal
from adain_jax.video.container import Frame, VideoError, VideoReader, VideoWriter

_QUEUE_BATCHES = 2  # batches waiting between two stages


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """The controls of `stylize_video` (the same as `adain-jax stylize`, plus the video ones)."""

    alpha: float = 1.0
    style_weights: Sequence[float] | None = None
    preserve_color: bool = False
    mask: str | os.PathLike | None = None    # one static mask or label image for the whole video
    content_size: int = 0                    # shorter side the network sees; 0: the frame size
    style_size: int = 512
    batch: int = 4
    codec: str | None = None
    crf: int | None = None
    smooth: float = 0.0                      # EMA factor of the content statistics, in [0, 1)
    blend: float = 0.0                       # flow-guided blending with the previous output, in [0, 1)


@dataclasses.dataclass(frozen=True)
class VideoResult:
    output: pathlib.Path
    frames: int
    seconds: float
    audio: str | None  # "copied", "re-encoded" or None (no audio track)


def is_video_path(path: str | os.PathLike) -> bool:
    """Anything that is not named like an image is read as a video."""
    return pathlib.Path(path).suffix.lower() not in image_io.IMAGE_EXTENSIONS


class _Stopped(Exception):
    """Another stage failed or the run was interrupted."""


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stopped


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    raise _Stopped


@dataclasses.dataclass
class _Chunk:
    """Consecutive frames (network input, float32) with their timestamps and the audio around them."""

    frames: list[np.ndarray] = dataclasses.field(default_factory=list)
    styles: list[np.ndarray] = dataclasses.field(default_factory=list)
    times: list[tuple[int, Any]] = dataclasses.field(default_factory=list)
    audio: list[Any] = dataclasses.field(default_factory=list)
    output: np.ndarray | None = None  # uint8 stylized frames, set by the compute stage


def _to_network(rgb: np.ndarray, size: int) -> np.ndarray:
    """A decoded frame -> the port's test-time transform (`io.images`), float32 in [0, 1]."""
    if size:
        return image_io.to_array(image_io.resize_shorter_side(Image.fromarray(rgb), size))
    return image_io.to_array(Image.fromarray(rgb))


def _network_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(height, width) after `resize_shorter_side`, without touching pixels."""
    if not size:
        return height, width
    w, h = image_io.resize_shorter_side(Image.new("L", (width, height)), size).size
    return h, w


def check_settings(content, styles, output, s: VideoSettings, style_video: bool) -> None:
    if s.batch < 1:
        raise ValueError(f"batch must be >= 1, got {s.batch}")
    if not 0.0 <= s.smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {s.smooth}")
    if not 0.0 <= s.blend < 1.0:
        raise ValueError(f"blend must be in [0, 1), got {s.blend}")
    if s.style_weights is not None and s.mask is not None:
        raise ValueError("give style weights (interpolation) or a mask (spatial control), not both")
    combined = s.style_weights is not None or s.mask is not None
    if combined and len(styles) < 2:
        raise ValueError("style weights and a mask need at least two styles")
    if not combined and len(styles) != 1:
        raise ValueError(f"{len(styles)} styles given: combine them with style weights or a mask")
    if s.style_weights is not None and len(s.style_weights) != len(styles):
        raise ValueError(f"{len(s.style_weights)} style weights for {len(styles)} styles")
    if style_video and combined:
        raise ValueError("a style video is used alone: it cannot be combined with style weights or a mask")
    if s.smooth and s.preserve_color:
        raise ValueError("smoothing works on the content statistics of a fixed style; it cannot be "
                         "combined with colour preservation, which changes the style on every frame")
    if pathlib.Path(output).resolve() in {pathlib.Path(content).resolve(), *(pathlib.Path(p).resolve() for p in styles)}:
        raise ValueError(f"{output}: the output would overwrite an input")


def stylize_video(weights, content: str | os.PathLike, styles: Sequence[str | os.PathLike],
                  output: str | os.PathLike, settings: VideoSettings = VideoSettings(), *,
                  progress: bool = True) -> VideoResult:
    """Stylizes the video file ``content`` with style image(s) or one style video into ``output``.

    The output keeps the input's frame count, displayed frame size, timestamps (exact rational
    rates, variable rates) and upright orientation, and its audio (copied when the output container
    can hold the codec, else re-encoded). Raises VideoError / ImageError (bad files, nothing
    written) or ValueError (bad settings); KeyboardInterrupt leaves no file either.
    """
    import jax

    s = settings
    styles = [pathlib.Path(p) for p in styles]
    style_video = len(styles) == 1 and is_video_path(styles[0])
    check_settings(content, styles, output, s, style_video)
    start = time.perf_counter()

    devices = jax.local_devices()
    mesh = parallel.make_mesh(devices)
    batch = -(-s.batch // len(devices)) * len(devices)  # a multiple of the device count
    weights = jax.device_put(weights, parallel.replicated(mesh))

    opened: list[VideoReader] = []
    writer = None
    try:
        reader = VideoReader(content)
        opened.append(reader)
        info = reader.info
        net_h, net_w = _network_size(info.width, info.height, s.content_size)
        style_reader = None
        if style_video:
            style_reader = VideoReader(styles[0], with_audio=False)
            opened.append(style_reader)
            if info.frames and style_reader.info.frames and info.frames != style_reader.info.frames:
                raise VideoError(styles[0], f"the style video has {style_reader.info.frames} frames but the "
                                            f"content {os.fspath(content)} has {info.frames}; they must match")
            style_images = None
        else:
            style_images = [image_io.load_image(p, s.style_size) for p in styles]
        masks = None
        if s.mask is not None:
            masks = runner.masks_from_file(s.mask, len(styles), net_h, net_w)
            if masks.ndim == 3:  # label map -> one-hot float masks
                masks = np.eye(len(styles), dtype=np.float32)[masks]
            masks = jax.device_put(masks, parallel.replicated(mesh))
        writer = VideoWriter(output, width=info.width, height=info.height, rate=info.rate,
                             time_base=info.time_base, codec=s.codec, crf=s.crf, audio_template=reader.audio)
        reader.audio_frames = writer.audio_mode == "transcode"
        compute = _BatchProgram(weights, mesh, batch, s, style_images, masks, len(styles))
        frames = _run_stages(reader, style_reader, writer, compute, s, batch, info, progress)
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for r in opened:
            r.close()
    audio = {"copy": "copied", "transcode": "re-encoded"}.get(writer.audio_mode)
    return VideoResult(pathlib.Path(output), frames, time.perf_counter() - start, audio)


class _BatchProgram:
    """The jitted computation for one padded batch, chosen once from the settings."""

    def __init__(self, weights, mesh, batch, s: VideoSettings, style_images, masks, num_styles):
        import jax
        import jax.numpy as jnp

        self.weights, self.mesh, self.batch, self.s, self.masks = weights, mesh, batch, s, masks
        self.style_weights = None if s.style_weights is None else jnp.asarray(s.style_weights, jnp.float32)
        self.style_images = None
        self.moments = None
        self.style_skips = variants.of(weights).style_skips
        if style_images is not None:
            if s.preserve_color or self.style_skips:
                if len({im.shape for im in style_images}) > 1:
                    raise ValueError("with colour preservation or style skips, combined styles must have the same "
                                     "size after resizing")
                self.style_images = jax.device_put(np.stack(style_images), parallel.replicated(mesh))
            else:
                # The style is encoded once for the whole video.
                stats = [transfer.style_moments(weights, im[None]) for im in style_images]
                self.moments = (jnp.concatenate([m for m, _ in stats]), jnp.concatenate([d for _, d in stats]))
        self.carry = temporal.initial_carry(num_styles, masked=masks is not None)
        self.started = False

    def _put_batch(self, arrays: list[np.ndarray]):
        import jax

        x = np.stack(arrays)
        if len(x) < self.batch:  # pad with the last frame: same shape, no recompilation
            x = np.concatenate([x, np.repeat(x[-1:], self.batch - len(x), axis=0)])
        return jax.device_put(x, parallel.batch_sharded(self.mesh))

    def __call__(self, chunk: _Chunk):
        """Dispatches the batch (asynchronously) and returns the device array."""
        s = self.s
        content = self._put_batch(chunk.frames)
        if chunk.styles:  # a style video: this batch's style frames
            styles = self._put_batch(chunk.styles)
            if s.preserve_color or self.style_skips:
                return transfer.stylize(self.weights, content, styles, alpha=s.alpha, preserve_color=s.preserve_color)
            mean, std = transfer.style_moments(self.weights, styles)
        elif s.preserve_color or self.style_skips:
            # Style skips decode from the style images' features, not only their statistics.
            return transfer.stylize(self.weights, content, self.style_images, alpha=s.alpha,
                                    style_weights=self.style_weights, preserve_color=s.preserve_color, masks=self.masks)
        else:
            mean, std = self.moments
        if s.smooth:
            out, self.carry = temporal.stylize_smoothed(
                self.weights, content, mean[:, None] if chunk.styles else mean[None], std[:, None] if chunk.styles else std[None],
                self.carry, self.started, s.smooth, len(chunk.frames), alpha=s.alpha,
                style_weights=self.style_weights, masks=self.masks)
            self.started = True
            return out
        return transfer.stylize_with_moments(self.weights, content, mean, std, alpha=s.alpha,
                                             style_weights=self.style_weights, masks=self.masks)


def _read_chunks(reader: VideoReader, style_reader: VideoReader | None, s: VideoSettings,
                 batch: int) -> Iterator[_Chunk]:
    style_frames = style_reader.frames() if style_reader is not None else None
    chunk, count = _Chunk(), 0
    for item in reader.items():
        if not isinstance(item, Frame):
            chunk.audio.append(item)
            continue
        chunk.frames.append(_to_network(item.rgb, s.content_size))
        chunk.times.append((item.pts, item.time_base))
        count += 1
        if style_frames is not None:
            style = next(style_frames, None)
            if style is None:
                raise VideoError(style_reader.path, f"the style video has {count - 1} frames but the content "
                                                    f"{reader.path} has more; they must match")
            chunk.styles.append(_to_network(style.rgb, s.style_size))
        if len(chunk.frames) == batch:
            yield chunk
            chunk = _Chunk()
    if style_frames is not None:
        extra = sum(1 for _ in style_frames)
        if extra:
            raise VideoError(style_reader.path, f"the style video has {count + extra} frames but the content "
                                                f"{reader.path} has {count}; they must match")
    if chunk.frames or chunk.audio:
        yield chunk


def _run_stages(reader, style_reader, writer: VideoWriter, compute: _BatchProgram, s: VideoSettings,
                batch: int, info, progress: bool) -> int:
    """Reader thread -> compute (this thread) -> writer thread; returns the number of frames written."""
    from tqdm import tqdm

    stop = threading.Event()
    errors: list[BaseException] = []
    to_compute: queue.Queue = queue.Queue(_QUEUE_BATCHES)
    to_write: queue.Queue = queue.Queue(_QUEUE_BATCHES)
    done = object()
    written = [0]
    bar = tqdm(total=info.frames or None, desc="stylizing video", unit="frame", file=sys.stderr,
               disable=None if progress else True)

    def stage(body):
        def run():
            try:
                body()
            except _Stopped:
                pass
            except BaseException as e:  # handed to the calling thread, which raises it
                errors.append(e)
                stop.set()
        return run

    def read():
        for chunk in _read_chunks(reader, style_reader, s, batch):
            _put(to_compute, chunk, stop)
        _put(to_compute, done, stop)

    def write():
        frame_size = (info.width, info.height)
        blend = None
        if s.blend:
            from adain_jax.video.deflicker import FlowBlend  # OpenCV only when asked for

            blend = FlowBlend(s.blend)
        while (chunk := _get(to_write, stop)) is not done:
            for item in chunk.audio:
                writer.write_audio(item)
            for i, (rgb, (pts, time_base)) in enumerate(zip(chunk.output if chunk.frames else (), chunk.times)):
                if blend is not None:  # at the network's resolution, before scaling back
                    rgb = blend(image_io.to_uint8(chunk.frames[i]), rgb)
                if rgb.shape[1::-1] != frame_size:  # --content-size: back to the frame size
                    rgb = np.asarray(Image.fromarray(rgb).resize(frame_size, Image.Resampling.BILINEAR))
                writer.write(rgb, pts, time_base)
                written[0] += 1
                bar.update(1)

    threads = [threading.Thread(target=stage(read), name="video-read", daemon=True),
               threading.Thread(target=stage(write), name="video-write", daemon=True)]
    for t in threads:
        t.start()

    def finish(chunk, out):
        if chunk.frames:
            chunk.output = image_io.to_uint8(np.asarray(out)[:len(chunk.frames)])
        _put(to_write, chunk, stop)

    try:
        pending = None
        while (chunk := _get(to_compute, stop)) is not done:
            out = compute(chunk) if chunk.frames else None  # dispatched; runs while we fetch the last one
            if pending is not None:
                finish(*pending)
            pending = (chunk, out)
        if pending is not None:
            finish(*pending)
        _put(to_write, done, stop)
        for t in threads:
            t.join()
    except BaseException as e:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        bar.close()
        if errors and isinstance(e, _Stopped):
            raise errors[0] from None
        raise
    bar.close()
    if errors:
        raise errors[0]
    return written[0]
