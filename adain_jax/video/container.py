"""Video files in and out with PyAV: upright RGB frames with their timestamps, audio passed through.

PyAV (FFmpeg bound through Cython, with FFmpeg inside its wheels) is the video I/O library because
it is the only common Python choice that gives each decoded frame its exact presentation timestamp
and time base, reads the display matrix that phones record instead of rotating pixels, and can copy
compressed audio packets into the output untouched. OpenCV's ``VideoCapture`` gives BGR frames, a
float frame rate and no audio; imageio/ffmpeg-python pipe raw frames through an external ffmpeg
program, which loses per-frame timestamps and is not pip-installable.

* `VideoReader` yields `Frame` (upright RGB uint8, pts, time base) and, in demux order, the audio
  packets (or decoded audio frames when the output cannot hold the audio codec).
* `VideoWriter` encodes frames with the given codec at the given timestamps and muxes the audio,
  into a hidden temporary file beside the output that `commit` renames over it; `abort` (also on
  any exception, Ctrl-C included) deletes it, so there is never a partial output file.

Every failure is a `VideoError`: one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from adain_jax import extras
from adain_jax.io.files import FileError, prepare_output

extras.require("video", "adain_jax.video")  # one line naming the extra, not "No module named 'av'"
import av  # noqa: E402 - only after the check above

__all__ = ["Frame", "VideoError", "VideoInfo", "VideoReader", "VideoWriter", "default_codec"]

# Encoders that take a constant-rate-factor option, and their default (visually lossless) CRF.
CRF_CODECS = {"libx264": 18, "libx264rgb": 18, "libx265": 20, "libvpx-vp9": 31, "libsvtav1": 30, "libaom-av1": 30}
# Lossless encoders that store RGB: chosen pixel formats keep the stylized pixels exactly.
_RGB_FORMATS = ("gbrp", "bgr0", "rgb24", "bgra", "rgba")


class VideoError(FileError):
    """A problem with one video file, as one line ``f"{path}: {problem}"``."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    width: int                 # upright (displayed) width
    height: int
    frames: int                # frame count from the container's index; 0 when it does not say
    rate: Fraction | None      # average frame rate, exactly as stored (e.g. 30000/1001)
    time_base: Fraction
    rotation: int              # counter-clockwise degrees applied to the coded image to show it
    audio_codec: str | None


@dataclasses.dataclass
class Frame:
    """One decoded frame: upright RGB uint8 (H, W, 3) and its presentation time ``pts * time_base``."""

    rgb: np.ndarray
    pts: int
    time_base: Fraction


def _av_problem(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.rstrip(".")


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    # The display matrix rotates the coded image counter-clockwise by `rotation` degrees (FFmpeg's
    # av_display_rotation_get); np.rot90 with k > 0 turns counter-clockwise too.
    k = (round(rotation / 90.0) % 4)
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


class VideoReader:
    """Opens a video file; `items` decodes it. Use as a context manager (closes the file)."""

    def __init__(self, path: str | os.PathLike, *, with_audio: bool = True):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise VideoError(self.path, "file not found")
        if os.path.isdir(self.path):
            raise VideoError(self.path, "is a directory, not a video file")
        try:
            self._container = av.open(self.path, "r")
        except av.error.PermissionError as e:
            raise VideoError(self.path, "permission denied") from e
        except (av.error.InvalidDataError, av.error.FFmpegError) as e:
            raise VideoError(self.path, f"cannot be read as a video: not a video file, or a corrupt or truncated "
                                        f"one (FFmpeg: {_av_problem(e)})") from e
        try:
            self._setup(with_audio)
        except BaseException:
            self._container.close()
            raise

    def _setup(self, with_audio: bool) -> None:
        videos = [s for s in self._container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            raise VideoError(self.path, f"has no video stream (found: {', '.join(kinds)})")
        self.video = videos[0]
        self.video.thread_type = "AUTO"  # frame-threaded decoding: the reader keeps up with compute
        audios = list(self._container.streams.audio) if with_audio else []
        self.audio = audios[0] if audios else None
        ctx = self.video.codec_context
        if not ctx.width or not ctx.height:
            raise VideoError(self.path, "the video stream has no frame size (corrupt header)")
        rotation = self._first_rotation()
        w, h = (ctx.height, ctx.width) if (round(rotation / 90.0) % 2) else (ctx.width, ctx.height)
        self.info = VideoInfo(width=w, height=h, frames=int(self.video.frames or 0),
                              rate=self.video.average_rate or self.video.guessed_rate,
                              time_base=self.video.time_base or Fraction(1, 90000), rotation=rotation,
                              audio_codec=self.audio.codec_context.name if self.audio is not None else None)
        self.audio_frames = False  # set True to get decoded audio frames instead of packets

    def _first_rotation(self) -> int:
        # FFmpeg attaches the stream's display matrix to every decoded frame; peeking at the first
        # frame is the version-independent way to read it (`items` reopens the file to rewind).
        try:
            for frame in self._container.decode(self.video):
                return round(frame.rotation or 0)
        except av.error.FFmpegError:
            pass  # `items` reports corrupt data with the frame it happened at
        return 0

    def _reopen(self) -> None:
        # Seeking back to the first frame is not exact in every container; opening again is.
        video_index = self.video.index
        audio_index = self.audio.index if self.audio is not None else None
        self._container.close()
        self._container = av.open(self.path, "r")
        self.video = next(s for s in self._container.streams.video if s.index == video_index)
        self.video.thread_type = "AUTO"
        self.audio = next((s for s in self._container.streams.audio if s.index == audio_index), None)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def items(self) -> Iterator[Frame | av.Packet | av.AudioFrame]:
        """Frames (upright RGB, in presentation order) and audio packets, as demuxed.

        Raises VideoError for corrupt data, a frame size that changes mid-stream, zero frames, and
        a file that ends before the frame count its index announces (truncated).
        """
        self._reopen()
        streams = [self.video] + ([self.audio] if self.audio is not None else [])
        rotation, count, last_pts = self.info.rotation, 0, None
        step = (1 / (self.info.rate * self.info.time_base)) if self.info.rate else 1
        try:
            for packet in self._container.demux(*streams):
                if packet.stream.type == "audio":
                    if packet.dts is None and packet.size == 0:
                        continue  # the flush packet
                    if self.audio_frames:
                        yield from packet.decode()
                    else:
                        yield packet
                    continue
                for frame in packet.decode():
                    rgb = _upright(frame.to_ndarray(format="rgb24"), rotation)
                    if rgb.shape[:2] != (self.info.height, self.info.width):
                        raise VideoError(self.path, f"frame {count} is {rgb.shape[1]}x{rgb.shape[0]} but the "
                                                    f"video started at {self.info.width}x{self.info.height}; "
                                                    f"a size change inside a stream is not supported")
                    pts = frame.pts
                    if pts is None:  # raw elementary streams carry no timestamps: use the frame rate
                        pts = 0 if last_pts is None else last_pts + max(round(step), 1)
                    last_pts = pts
                    count += 1
                    yield Frame(rgb, int(pts), frame.time_base or self.info.time_base)
        except (av.error.InvalidDataError, av.error.FFmpegError) as e:
            of = f" of {self.info.frames}" if self.info.frames else ""
            raise VideoError(self.path, f"corrupt or truncated video data after {count}{of} frames "
                                        f"(FFmpeg: {_av_problem(e)})") from e
        if count == 0:
            raise VideoError(self.path, "the video stream has no frames")
        if self.info.frames and count < self.info.frames:
            raise VideoError(self.path, f"truncated: only {count} of the {self.info.frames} frames its index "
                                        f"announces could be decoded")

    def frames(self) -> Iterator[Frame]:
        """Only the frames."""
        return (item for item in self.items() if isinstance(item, Frame))


def default_codec(path: str | os.PathLike) -> str:
    return "libvpx-vp9" if pathlib.Path(path).suffix.lower() == ".webm" else "libx264"


def _pixel_format(codec: str, width: int, height: int) -> str:
    try:
        formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or ())]
    except Exception:  # noqa: BLE001 - a codec this FFmpeg build lacks: the writer reports it by name
        formats = []
    for name in _RGB_FORMATS:
        if codec not in CRF_CODECS and name in formats:
            return name  # a lossless RGB codec (ffv1, png, ...): keep RGB
    # 4:2:0 is what every player reads, but needs even sizes; odd sizes keep full chroma.
    want = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    if not formats or want in formats:
        return want
    return formats[0]


class VideoWriter:
    """Encodes frames and muxes audio into ``path`` atomically (temporary file, then rename)."""

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, rate: Fraction | None,
                 time_base: Fraction, codec: str | None = None, crf: int | None = None,
                 audio_template=None):
        self.path = pathlib.Path(path)
        name = os.fspath(self.path)
        codec = codec or default_codec(self.path)
        if crf is not None and codec not in CRF_CODECS:
            raise VideoError(name, f"--crf applies to {', '.join(CRF_CODECS)}, not to codec {codec!r}")
        prepare_output(self.path, VideoError)
        parent = self.path.parent
        self._temp = parent / f".{self.path.stem}.{secrets.token_hex(6)}.partial{self.path.suffix}"
        try:
            open(self._temp, "xb").close()
        except OSError as e:
            raise VideoError(name, f"cannot write to the directory {os.fspath(parent)}: {e.strerror or e}") from e
        self._container: av.container.OutputContainer | None = None
        try:
            try:
                self._container = av.open(os.fspath(self._temp), "w")
            except ValueError as e:
                raise VideoError(name, f"unknown video container format {self.path.suffix!r} "
                                       f"(use e.g. .mp4, .mkv, .mov, .webm)") from e
            self._open_streams(name, width, height, rate, time_base, codec, crf, audio_template)
        except BaseException:
            self.abort()
            raise

    def _output(self) -> av.container.OutputContainer:
        """The open temporary file (VideoError once the writer was committed or aborted)."""
        if self._container is None:
            raise VideoError(os.fspath(self.path), "the writer is closed")
        return self._container

    def _open_streams(self, name, width, height, rate, time_base, codec, crf, audio_template) -> None:
        container = self._output()
        options = {}
        if codec in CRF_CODECS:
            options["crf"] = str(CRF_CODECS[codec] if crf is None else crf)
            if codec == "libvpx-vp9":
                options["b"] = "0"  # constant quality
        try:
            self.video = container.add_stream(codec, rate=rate, options=options)
        except (ValueError, av.error.FFmpegError) as e:
            raise VideoError(name, f"cannot encode with codec {codec!r} in a {self.path.suffix} file "
                                   f"({_av_problem(e)})") from e
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = _pixel_format(codec, width, height)
        # The input's time base, so every input timestamp (variable frame rate included) is kept.
        self.video.codec_context.time_base = time_base
        self.video.time_base = time_base
        self.audio, self.audio_mode = None, None
        if audio_template is not None:
            try:
                # avformat_query_codec answers 1 only for codecs the muxer is known to take (WebM: no AAC).
                if audio_template.codec_context.name not in container.supported_codecs:
                    raise ValueError("not supported")
                self.audio = container.add_stream_from_template(audio_template)
                self.audio_mode = "copy"
            except (ValueError, av.error.FFmpegError):
                # The container cannot hold this audio codec: re-encode to its default one.
                codec = container.default_audio_codec
                rate = audio_template.codec_context.sample_rate
                rates = av.codec.Codec(codec, "w").audio_rates  # e.g. Opus: 48 kHz and divisors only
                if rates and rate not in rates:
                    rate = min(rates, key=lambda r: (r < rate, abs(r - rate)))
                layout = audio_template.codec_context.layout.name
                self.audio = container.add_stream(codec, rate=rate, layout=layout)
                self.audio_mode = "transcode"

    def write(self, rgb: np.ndarray, pts: int, time_base: Fraction) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        try:
            self._output().mux(self.video.encode(frame))
        except av.error.FFmpegError as e:
            raise VideoError(os.fspath(self.path), f"cannot encode frame at pts {pts} ({_av_problem(e)})") from e

    def write_audio(self, item) -> None:
        try:
            if self.audio_mode == "copy":
                item.stream = self.audio
                self._output().mux(item)
            elif self.audio_mode == "transcode" and self.audio is not None:
                item.pts = None  # let the encoder count samples
                self._output().mux(self.audio.encode(item))
        except av.error.FFmpegError as e:
            raise VideoError(os.fspath(self.path), f"cannot write the audio ({_av_problem(e)})") from e

    def commit(self) -> None:
        """Flushes the encoders, closes the file and renames it over the output."""
        try:
            container = self._output()
            container.mux(self.video.encode())
            if self.audio_mode == "transcode" and self.audio is not None:
                container.mux(self.audio.encode())
            container.close()
            self._container = None
            os.replace(self._temp, self.path)
        except BaseException as e:
            self.abort()
            if isinstance(e, av.error.FFmpegError):
                raise VideoError(os.fspath(self.path), f"cannot finish the file ({_av_problem(e)})") from e
            if isinstance(e, OSError):
                raise VideoError(os.fspath(self.path), f"cannot write the file ({e.strerror or e})") from e
            raise

    def abort(self) -> None:
        """Closes and deletes the temporary file; the output path is left as it was."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # already failing: the first error is the one to report
                self._container.close()
            self._container = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)
