"""Video files in, stylized video files out: `stylize_video`, streaming and batched.

Three stages overlap (`adain_jax.video.stages.Stages`): a reader thread decodes frames (and passes
the audio along in demux order), the calling thread runs the jitted batch program on the devices, and
a writer thread encodes. They hand over through queues of at most two batches each, so memory is flat
in the video's length; an error in any stage stops all three and no output file is left. The
style is encoded once (`transfer.style_moments`), unless it is a video (one style frame per content
frame) or colours are preserved (CORAL depends on each frame). Every batch has the same shape - the
last one is padded by repeating its last frame - so the program compiles once; the batch is split
over every local device (`parallel.batch_sharded`). The style controls are one
`adain_jax.controls.Controls` (refusals: `ControlError`). Nothing here parses arguments or prints,
except the progress bar.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from adain_jax import controls, parallel, transfer
from adain_jax.io import images as image_io
from adain_jax.io import masks as mask_io
from adain_jax.model import variants
from adain_jax.precision import Precision
from adain_jax.video import stages, temporal
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
    precision: Precision = "float32"         # of the convolutions (adain_jax.precision); --smooth runs float32


@dataclasses.dataclass(frozen=True)
class VideoResult:
    output: pathlib.Path
    frames: int
    seconds: float
    audio: str | None  # "copied", "re-encoded" or None (no audio track)


def is_video_path(path: str | os.PathLike) -> bool:
    """Anything that is not named like an image is read as a video."""
    return pathlib.Path(path).suffix.lower() not in image_io.IMAGE_EXTENSIONS


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


def check_settings(content, styles, output, s: VideoSettings, style_video: bool) -> controls.Controls:
    """The run's `Controls`; ControlError for controls that cannot be combined, ValueError for the rest."""
    if s.batch < 1:
        raise ValueError(f"batch must be >= 1, got {s.batch}")
    if not 0.0 <= s.smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {s.smooth}")
    if not 0.0 <= s.blend < 1.0:
        raise ValueError(f"blend must be in [0, 1), got {s.blend}")
    style_weights = None if s.style_weights is None else tuple(s.style_weights)
    ctl = controls.Controls(num_styles=len(styles), alpha=s.alpha, style_weights=style_weights,
                            masked=s.mask is not None, preserve_color=s.preserve_color)
    if style_video and ctl.combined:
        raise ValueError("a style video is used alone: it cannot be combined with style weights or a mask")
    if s.smooth and s.preserve_color:
        raise ValueError("smoothing works on the content statistics of a fixed style; it cannot be "
                         "combined with colour preservation, which changes the style on every frame")
    inputs = {pathlib.Path(content).resolve(), *(pathlib.Path(p).resolve() for p in styles)}
    if pathlib.Path(output).resolve() in inputs:
        raise ValueError(f"{output}: the output would overwrite an input")
    return ctl


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
    ctl = check_settings(content, styles, output, s, style_video)
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
        net_w, net_h = image_io.resized_size(info.width, info.height, s.content_size)
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
            masks = mask_io.masks_from_file(s.mask, len(styles), net_h, net_w)
            if masks.ndim == 3:  # label map -> one-hot float masks
                masks = np.eye(len(styles), dtype=np.float32)[masks]
            masks = jax.device_put(masks, parallel.replicated(mesh))
        writer = VideoWriter(output, width=info.width, height=info.height, rate=info.rate,
                             time_base=info.time_base, codec=s.codec, crf=s.crf, audio_template=reader.audio)
        reader.audio_frames = writer.audio_mode == "transcode"
        compute = _BatchProgram(weights, mesh, batch, s, ctl, style_images, masks, styles)
        frames = _run_stages(reader, style_reader, writer, compute, s, batch, info, progress)
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for r in opened:
            r.close()
    audio = {"copy": "copied", "transcode": "re-encoded"}.get(writer.audio_mode or "")  # None: no audio
    return VideoResult(pathlib.Path(output), frames, time.perf_counter() - start, audio)


class _BatchProgram:
    """The jitted computation for one padded batch, chosen once from the settings."""

    def __init__(self, weights, mesh, batch, s: VideoSettings, ctl: controls.Controls, style_images, masks,
                 style_names: Sequence = ()):
        import jax
        import jax.numpy as jnp

        self.weights, self.mesh, self.batch, self.s, self.ctl, self.masks = weights, mesh, batch, s, ctl, masks
        self.style_weights = ctl.weights_array()
        self.style_images = None
        self.moments = None
        self.style_skips = variants.of(weights).style_skips
        if style_images is not None:
            if ctl.preserve_color or self.style_skips:
                why = "preserve_color" if ctl.preserve_color else "style skips"
                controls.check_same_size([im.shape for im in style_images], style_names, why)
                self.style_images = jax.device_put(np.stack(style_images), parallel.replicated(mesh))
            else:
                # The style is encoded once for the whole video.
                stats = [transfer.style_moments(weights, im[None], precision=s.precision) for im in style_images]
                self.moments = (jnp.concatenate([m for m, _ in stats]), jnp.concatenate([d for _, d in stats]))
        self.carry = temporal.initial_carry(ctl.num_styles, masked=masks is not None)
        self.started = False

    def _put_batch(self, arrays: list[np.ndarray]):
        import jax

        x = np.stack(arrays)
        if len(x) < self.batch:  # pad with the last frame: same shape, no recompilation
            x = np.concatenate([x, np.repeat(x[-1:], self.batch - len(x), axis=0)])
        return jax.device_put(x, parallel.batch_sharded(self.mesh))

    def __call__(self, chunk: _Chunk):
        """Dispatches the batch (asynchronously) and returns the device array."""
        ctl, smooth = self.ctl, self.s.smooth
        content = self._put_batch(chunk.frames)
        if chunk.styles:  # a style video: this batch's style frames
            styles = self._put_batch(chunk.styles)
            if ctl.preserve_color or self.style_skips:
                return transfer.stylize(self.weights, content, styles, alpha=ctl.alpha,
                                        preserve_color=ctl.preserve_color, precision=self.s.precision)
            mean, std = transfer.style_moments(self.weights, styles, precision=self.s.precision)
        elif ctl.preserve_color or self.style_skips:
            # Style skips decode from the style images' features, not only their statistics.
            assert self.style_images is not None, "set in __init__ for these runs without a style video"
            return transfer.stylize(self.weights, content, self.style_images, alpha=ctl.alpha,
                                    style_weights=self.style_weights, preserve_color=ctl.preserve_color,
                                    masks=self.masks, precision=self.s.precision)
        else:
            assert self.moments is not None, "set in __init__ for every run without a style video"
            mean, std = self.moments
        if smooth:
            out, self.carry = temporal.stylize_smoothed(
                self.weights, content, *((mean[:, None], std[:, None]) if chunk.styles else (mean[None], std[None])),
                self.carry, self.started, smooth, len(chunk.frames), alpha=ctl.alpha,
                style_weights=self.style_weights, masks=self.masks)
            self.started = True
            return out
        return transfer.stylize_with_moments(self.weights, content, mean, std, alpha=ctl.alpha,
                                             style_weights=self.style_weights, masks=self.masks,
                                             precision=self.s.precision)


def _read_chunks(reader: VideoReader, style_reader: VideoReader | None, s: VideoSettings,
                 batch: int) -> Iterator[_Chunk]:
    style_frames = style_reader.frames() if style_reader is not None else iter(())
    chunk, count = _Chunk(), 0
    for item in reader.items():
        if not isinstance(item, Frame):
            chunk.audio.append(item)
            continue
        chunk.frames.append(_to_network(item.rgb, s.content_size))
        chunk.times.append((item.pts, item.time_base))
        count += 1
        if style_reader is not None:
            style = next(style_frames, None)
            if style is None:
                raise VideoError(style_reader.path, f"the style video has {count - 1} frames but the content "
                                                    f"{reader.path} has more; they must match")
            chunk.styles.append(_to_network(style.rgb, s.style_size))
        if len(chunk.frames) == batch:
            yield chunk
            chunk = _Chunk()
    if style_reader is not None:
        extra = sum(1 for _ in style_frames)
        if extra:
            raise VideoError(style_reader.path, f"the style video has {count + extra} frames but the content "
                                                f"{reader.path} has {count}; they must match")
    if chunk.frames or chunk.audio:
        yield chunk


def _computed(compute: _BatchProgram, chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """The compute stage: each chunk with its uint8 output. The next batch is dispatched before the
    previous one is fetched from the device, so the device works while the host waits."""
    pending = None
    for chunk in chunks:
        out = compute(chunk) if chunk.frames else None  # asynchronous: runs while the last one is fetched
        if pending is not None:
            yield _fetched(*pending)
        pending = (chunk, out)
    if pending is not None:
        yield _fetched(*pending)


def _fetched(chunk: _Chunk, out) -> _Chunk:
    if chunk.frames:
        chunk.output = image_io.to_uint8(np.asarray(out)[:len(chunk.frames)])
    return chunk


class _FrameWriter:
    """The write stage: audio as it came, frames blended (``blend``) and scaled back to the frame size."""

    def __init__(self, writer: VideoWriter, s: VideoSettings, info, bar):
        self.writer, self.frame_size, self.bar, self.written = writer, (info.width, info.height), bar, 0
        self.blend = None
        if s.blend:
            # OpenCV only when asked for.
            from adain_jax.video.deflicker import FlowBlend

            self.blend = FlowBlend(s.blend)

    def __call__(self, chunk: _Chunk) -> None:
        for item in chunk.audio:
            self.writer.write_audio(item)
        outputs = chunk.output if chunk.output is not None else ()  # None: no frames in this chunk
        for i, (rgb, (pts, time_base)) in enumerate(zip(outputs, chunk.times, strict=False)):
            if self.blend is not None:  # at the network's resolution, before scaling back
                rgb = self.blend(image_io.to_uint8(chunk.frames[i]), rgb)
            if rgb.shape[1::-1] != self.frame_size:  # --content-size: back to the frame size
                rgb = np.asarray(Image.fromarray(rgb).resize(self.frame_size, Image.Resampling.BILINEAR))
            self.writer.write(rgb, pts, time_base)
            self.written += 1
            self.bar.update(1)


def _run_stages(reader, style_reader, writer: VideoWriter, compute: _BatchProgram, s: VideoSettings,
                batch: int, info, progress: bool) -> int:
    """Reader thread -> compute (this thread) -> writer thread; returns the number of frames written."""
    from tqdm import tqdm

    bar = tqdm(total=info.frames or None, desc="stylizing video", unit="frame", file=sys.stderr,
               disable=None if progress else True)
    write = _FrameWriter(writer, s, info, bar)
    try:
        stages.Stages(lambda: _read_chunks(reader, style_reader, s, batch),
                      lambda chunks: _computed(compute, chunks), write, depth=_QUEUE_BATCHES, name="video").run()
    finally:
        bar.close()
    return write.written
