"""`adain-jax video` and `adain_jax.video`: faithful container (frames, size, timestamps, rotation,
audio), per-frame equality with `adain-jax stylize`, one compilation, smoothing, and bad input.

The videos are made here with PyAV: moving shapes, 64x48, 12 frames at 30000/1001, with and
without an AAC track. Every network run uses the same frame size and batch, so the suite compiles
each program once.
"""

from __future__ import annotations

import fractions
import pathlib
import time

import av
import numpy as np
import pytest
from PIL import Image

import adain_jax
from adain_jax import cli, transfer
from adain_jax.io import images as image_io
from adain_jax.video import container, pipeline, temporal

from helpers import write_image

NTSC = fractions.Fraction(30000, 1001)
H, W, N = 48, 64, 12


def moving_shapes(n=N, height=H, width=W, seed=0):
    """Frames of a smooth background with a red box moving right and a blue disc moving left."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        f = background.copy()
        f[6 + i:6 + i + height // 4, 4 + 2 * i:4 + 2 * i + width // 5] = (230, 40, 40)
        f[(yy - height * 2 // 3) ** 2 + (xx - (width - 10 - 2 * i)) ** 2 < (height // 8) ** 2] = (30, 60, 220)
        frames.append(f)
    return frames


def make_video(path, frames, *, rate=NTSC, audio=True, codec="libx264", pts=None, time_base=None, rotation=0,
               options=None):
    """Writes ``frames`` (uint8 RGB) with PyAV; ``pts`` in ``time_base`` (default 1/rate) for VFR."""
    out = av.open(str(path), "w", options=options or {})
    video = out.add_stream(codec, rate=rate, options={"crf": "10"} if codec == "libx264" else {})
    video.height, video.width = frames[0].shape[:2]
    if codec == "libx264":
        video.pix_fmt = "yuv420p"
    tb = time_base or fractions.Fraction(1) / rate
    video.codec_context.time_base = tb
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=44100) if audio else None
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = (i if pts is None else pts[i]), tb
        out.mux(video.encode(frame))
    out.mux(video.encode())
    if sound is not None:
        samples = int(44100 * len(frames) / rate)
        wave = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)[None]
        for pos in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, pos:pos + 1024]), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 44100, pos
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    out.close()
    return pathlib.Path(path)


def decoded(path):
    """[(rgb, seconds)] of every frame, upright, and the audio packets' bytes."""
    with container.VideoReader(path) as reader:
        frames, audio = [], []
        for item in reader.items():
            if isinstance(item, container.Frame):
                frames.append((item.rgb, item.pts * item.time_base))
            else:
                audio.append(bytes(item))
        return frames, audio, reader.info


def video_cli(weights_dir, *args):
    return cli.main(["video", "--weights", str(weights_dir), "--style-size", "0", *map(str, args)])


@pytest.fixture
def style_png(tmp_path):
    return write_image(tmp_path / "style.png", 40, 40, seed=5)


def test_output_keeps_frame_count_size_timestamps_rate_and_copies_the_audio(weights_dir, style_png, tmp_path):
    src = make_video(tmp_path / "in.mp4", moving_shapes())
    out = tmp_path / "out.mp4"
    assert video_cli(weights_dir, "--content", src, "--style", style_png, "--output", out, "--batch", "5") == 0
    in_frames, in_audio, in_info = decoded(src)
    out_frames, out_audio, out_info = decoded(out)
    assert len(out_frames) == len(in_frames) == N
    assert out_frames[0][0].shape == (H, W, 3)
    assert [t for _, t in out_frames] == [t for _, t in in_frames] == [fractions.Fraction(1001 * i, 30000) for i in range(N)]
    assert out_info.rate == NTSC
    assert in_audio and out_audio == in_audio  # every packet, byte for byte: copied, not re-encoded
    # libx264 at the default CRF: close to the stylized frames (the tight check is the ffv1 test).
    weights = adain_jax.load_weights(weights_dir)
    moments = transfer.style_moments(weights, image_io.load_image(style_png)[None])
    for (rgb_in, _), (rgb_out, _) in zip(in_frames, out_frames):
        frame = image_io.to_array(Image.fromarray(rgb_in))[None]
        expected = image_io.to_uint8(np.asarray(transfer.stylize_with_moments(weights, frame, *moments)[0]))
        assert np.abs(rgb_out.astype(int) - expected).mean() < 4.0


def test_each_frame_equals_adain_jax_stylize_of_that_frame_and_the_padded_batch_compiles_once(
        weights_dir, style_png, tmp_path):
    # Variable frame rate in a 1/90000 time base, no audio, lossless RGB output (PNG in QuickTime,
    # whose time base is free; Matroska's is 1/1000 s).
    pts = np.cumsum([0, 3003, 3003, 6006, 1501, 3003, 4504, 3003, 3003, 9009, 3003, 3003])
    src = make_video(tmp_path / "vfr.mp4", moving_shapes(), audio=False, pts=[int(p) for p in pts],
                     time_base=fractions.Fraction(1, 90000))
    out = tmp_path / "out.mov"
    transfer.stylize_with_moments.clear_cache()
    # 12 frames in batches of 5: the last batch has 2 frames and 3 padding frames.
    assert video_cli(weights_dir, "--content", src, "--style", style_png, "--output", out,
                     "--batch", "5", "--codec", "png", "--alpha", "0.8") == 0
    assert transfer.stylize_with_moments._cache_size() == 1
    in_frames, _, _ = decoded(src)
    out_frames, out_audio, _ = decoded(out)
    assert [t for _, t in out_frames] == [t for _, t in in_frames] == [fractions.Fraction(int(p), 90000) for p in pts]
    assert out_audio == []
    for i, ((rgb_in, _), (rgb_out, _)) in enumerate(zip(in_frames, out_frames)):
        frame_png = tmp_path / "frames" / f"f{i}.png"
        image_io.save_image(frame_png, rgb_in)
        assert cli.main(["stylize", "--weights", str(weights_dir), "--content", str(frame_png), "--style", str(style_png),
                         "--content-size", "0", "--style-size", "0", "--alpha", "0.8", "--output",
                         str(tmp_path / "stylized"), "--ext", "png"]) == 0
        expected = np.asarray(Image.open(tmp_path / "stylized" / f"f{i}_stylized_style.png"))
        # A batch of 5 and a batch of 1 may round differently in the last float bit: at most 1 level.
        assert np.abs(rgb_out.astype(int) - expected).max() <= 1, f"frame {i}"


def test_phone_rotation_is_applied_and_the_output_is_upright(tmp_path):
    frames = moving_shapes()
    src = make_video(tmp_path / "phone.mp4", frames, rotation=90, audio=False)
    with container.VideoReader(src) as reader:
        assert (reader.info.width, reader.info.height, reader.info.rotation) == (H, W, 90)
        got = [f.rgb for f in reader.frames()]
        assert len(got) == N
        # What a player shows: the coded picture turned 90 degrees counter-clockwise.
        right = np.abs(got[3].astype(int) - np.rot90(frames[3]).astype(int)).mean()
        wrong = np.abs(got[3].astype(int) - np.rot90(frames[3], -1).astype(int)).mean()
        assert right < 8 and wrong > 4 * right, (right, wrong)
        writer = container.VideoWriter(tmp_path / "up.mp4", width=H, height=W, rate=reader.info.rate,
                                       time_base=reader.info.time_base)
        for f in container.VideoReader(src).frames():
            writer.write(f.rgb, f.pts, f.time_base)
        writer.commit()
    with container.VideoReader(tmp_path / "up.mp4") as up:
        assert (up.info.width, up.info.height, up.info.rotation) == (H, W, 0)


def test_audio_the_container_cannot_hold_is_re_encoded(tmp_path):
    src = make_video(tmp_path / "in.mkv", moving_shapes(4), codec="ffv1")
    out = av.open(str(tmp_path / "pcm.mkv"), "w")  # PCM audio, which WebM cannot carry: becomes Opus
    with av.open(str(src)) as original:
        video = out.add_stream_from_template(original.streams.video[0])
        pcm = out.add_stream("pcm_s16le", rate=44100)
        for packet in original.demux(original.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.int16), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 44100, 0
    out.mux(pcm.encode(frame))
    out.mux(pcm.encode())
    out.close()
    with container.VideoReader(tmp_path / "pcm.mkv") as reader:
        writer = container.VideoWriter(tmp_path / "o.webm", width=W, height=H, rate=reader.info.rate,
                                       time_base=reader.info.time_base, audio_template=reader.audio)
        assert writer.audio_mode == "transcode"
        reader.audio_frames = True
        for item in reader.items():
            if isinstance(item, container.Frame):
                writer.write(item.rgb, item.pts, item.time_base)
            else:
                writer.write_audio(item)
        writer.commit()
    frames, audio, info = decoded(tmp_path / "o.webm")
    assert len(frames) == 4 and audio and info.audio_codec == "opus"
    assert not list(tmp_path.glob(".o.*"))


def test_smoothing_with_beta_0_is_plain_adain_and_batches_carry_the_average(random_weights):
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 1, (6, 24, 32, 3)).astype(np.float32)
    style = rng.uniform(0, 1, (1, 24, 24, 3)).astype(np.float32)
    mean, std = transfer.style_moments(random_weights, style)
    carry = temporal.initial_carry(1)
    plain = transfer.stylize_with_moments(random_weights, frames[:3], mean, std)
    same, _ = temporal.stylize_smoothed(random_weights, frames[:3], mean[None], std[None], carry, False, 0.0, 3)
    np.testing.assert_allclose(np.asarray(same), np.asarray(plain), atol=2e-6)

    beta = 0.8
    first, c = temporal.stylize_smoothed(random_weights, frames[:3], mean[None], std[None], carry, False, beta, 3)
    second, _ = temporal.stylize_smoothed(random_weights, frames[3:], mean[None], std[None], c, True, beta, 3)
    # The reference: the moving average of each frame's statistics in float64, then AdaIN with them.
    import jax

    from adain_jax.model import networks, ops

    feats = jax.jit(networks.encode)(random_weights["encoder"], frames)["relu4_1"]
    m, s = (np.asarray(a, np.float64) for a in ops.moments(feats))
    for t in range(1, 6):
        m[t], s[t] = beta * m[t - 1] + (1 - beta) * m[t], beta * s[t - 1] + (1 - beta) * s[t]
    f = np.asarray(feats, np.float64)
    target = (f - m[:, None, None]) / s[:, None, None] * np.asarray(std, np.float64) + np.asarray(mean, np.float64)
    expected = np.clip(np.asarray(jax.jit(networks.decode)(random_weights["decoder"], target.astype(np.float32)))[:, :24, :32], 0, 1)
    got = np.concatenate([np.asarray(first), np.asarray(second)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # And it does something: frame 2 differs from unsmoothed AdaIN.
    assert np.abs(got[2] - np.asarray(plain)[2]).max() > 1e-3


def _no_output(directory, name):
    return not (directory / name).exists() and not list(directory.glob(".*partial*"))


def test_bad_inputs_give_one_line_naming_the_file_exit_1_and_no_output(weights_dir, style_png, tmp_path, capsys):
    good = make_video(tmp_path / "good.mp4", moving_shapes(), audio=False)
    (tmp_path / "text.mp4").write_text("hello, not a video\n")
    audio_only = av.open(str(tmp_path / "sound.m4a"), "w")
    sound = audio_only.add_stream("aac", rate=44100)
    chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    chunk.sample_rate, chunk.pts = 44100, 0
    audio_only.mux(sound.encode(chunk))
    audio_only.mux(sound.encode())
    audio_only.close()
    faststart = make_video(tmp_path / "fs.mp4", moving_shapes(), audio=False, options={"movflags": "faststart"})
    data = faststart.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[:len(data) * 6 // 10])
    empty = av.open(str(tmp_path / "empty.mkv"), "w")  # a video stream with no frames (and some audio)
    v = empty.add_stream("libx264", rate=30)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    a = empty.add_stream("aac", rate=44100)
    empty.mux(a.encode(chunk))
    empty.mux(a.encode())
    empty.close()
    short_style = make_video(tmp_path / "short_style.mp4", moving_shapes(5), audio=False)
    (tmp_path / "a_file").write_text("x")

    cases = {
        "text.mp4": ("--content", tmp_path / "text.mp4", "not a video file"),
        "sound.m4a": ("--content", tmp_path / "sound.m4a", "has no video stream (found: audio)"),
        "truncated.mp4": ("--content", tmp_path / "truncated.mp4", "truncated"),
        "empty.mkv": ("--content", tmp_path / "empty.mkv", "no frames"),
        "missing.mp4": ("--content", tmp_path / "missing.mp4", "file not found"),
        "short_style.mp4": ("--style", short_style, "the style video has 5 frames but the content"),
        "a_file": ("--output", tmp_path / "a_file" / "out.mp4", "cannot create the output directory"),
    }
    for name, (flag, value, message) in cases.items():
        args = {"--content": good, "--style": style_png, "--output": tmp_path / "out.mp4"}
        args[flag] = value
        status = video_cli(weights_dir, *[x for kv in args.items() for x in kv])
        model, *lines = capsys.readouterr().err.strip().splitlines()
        err = "\n".join(lines)
        assert status == 1, name
        assert model.startswith("model: ")  # every command first names its model
        assert len(lines) == 1 and name in err and message in err, err
        assert _no_output(tmp_path, "out.mp4"), name


def test_ctrl_c_or_a_failure_midway_leaves_no_file(weights_dir, style_png, tmp_path, monkeypatch, capsys):
    src = make_video(tmp_path / "in.mp4", moving_shapes(), audio=False)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an older file")
    calls = []
    real = pipeline._BatchProgram.__call__

    def interrupt_second_batch(self, chunk):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, chunk)

    monkeypatch.setattr(pipeline._BatchProgram, "__call__", interrupt_second_batch)
    assert video_cli(weights_dir, "--content", src, "--style", style_png, "--output", out, "--batch", "5") == 130
    assert "interrupted" in capsys.readouterr().err
    assert out.read_bytes() == b"an older file" and not list(tmp_path.glob(".*partial*"))

    monkeypatch.setattr(pipeline._BatchProgram, "__call__", real)
    def fail_third_frame(self, rgb, pts, time_base, _count=[0]):
        _count[0] += 1
        if _count[0] == 3:
            raise container.VideoError(self.path, "disk full (simulated)")
        return real_write(self, rgb, pts, time_base)

    real_write = container.VideoWriter.write
    monkeypatch.setattr(container.VideoWriter, "write", fail_third_frame)
    assert video_cli(weights_dir, "--content", src, "--style", style_png, "--output", out, "--batch", "5") == 1
    assert "disk full (simulated)" in capsys.readouterr().err
    assert out.read_bytes() == b"an older file" and not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_style_video_styles_each_frame_with_its_own_style_frame(weights_dir, tmp_path):
    src = make_video(tmp_path / "in.mp4", moving_shapes(), audio=False)
    style = make_video(tmp_path / "style.mp4", moving_shapes(seed=7)[::-1], audio=False)
    out = tmp_path / "out.mkv"
    assert video_cli(weights_dir, "--content", src, "--style", style, "--output", out, "--codec", "ffv1") == 0
    in_frames, _, _ = decoded(src)
    style_frames, _, _ = decoded(style)
    out_frames, _, _ = decoded(out)
    assert len(out_frames) == N
    weights = adain_jax.load_weights(weights_dir)
    for i in (0, N - 1):
        c = image_io.to_array(Image.fromarray(in_frames[i][0]))[None]
        s = image_io.to_array(Image.fromarray(style_frames[i][0]))[None]
        expected = image_io.to_uint8(np.asarray(transfer.stylize(weights, c, s)[0]))
        assert np.abs(out_frames[i][0].astype(int) - expected).max() <= 1


def test_blend_reduces_the_warping_error_and_smooth_runs_end_to_end(random_weights, style_png, tmp_path):
    from adain_jax.video import flicker

    rng = np.random.default_rng(2)
    frames = [np.clip(f.astype(int) + rng.normal(0, 8, f.shape), 0, 255).astype(np.uint8) for f in moving_shapes()]
    src = make_video(tmp_path / "noisy.mp4", frames, audio=False)
    outs = {}
    for name, settings in {"plain": pipeline.VideoSettings(batch=5, codec="ffv1", style_size=0),
                           "blend": pipeline.VideoSettings(batch=5, codec="ffv1", style_size=0, blend=0.7),
                           "smooth": pipeline.VideoSettings(batch=5, codec="ffv1", style_size=0, smooth=0.9)}.items():
        outs[name] = pipeline.stylize_video(random_weights, src, [style_png], tmp_path / f"{name}.mkv", settings,
                                            progress=False).output
    plain, blended, smoothed = (decoded(outs[k])[0] for k in ("plain", "blend", "smooth"))
    assert len(blended) == len(smoothed) == N
    np.testing.assert_array_equal(blended[0][0], plain[0][0])  # nothing to blend with yet
    assert flicker.video_warping_error(outs["blend"], src).mean < 0.7 * flicker.video_warping_error(outs["plain"], src).mean
    assert any(np.abs(a[0].astype(int) - b[0].astype(int)).max() > 0 for a, b in zip(smoothed[1:], plain[1:]))


def test_the_reader_runs_at_most_a_few_batches_ahead_so_memory_is_flat(random_weights, style_png, tmp_path, monkeypatch):
    src = make_video(tmp_path / "long.mp4", moving_shapes(40), audio=False)
    read, ahead = [0], []
    real_read, real_call = pipeline._read_chunks, pipeline._BatchProgram.__call__

    def counting_read(*args):
        for chunk in real_read(*args):
            read[0] += 1
            yield chunk

    def slow_call(self, chunk, _computed=[0]):
        _computed[0] += 1
        time.sleep(0.05)  # a slow device: the reader must wait, not pile frames up
        ahead.append(read[0] - _computed[0])
        return real_call(self, chunk)

    monkeypatch.setattr(pipeline, "_read_chunks", counting_read)
    monkeypatch.setattr(pipeline._BatchProgram, "__call__", slow_call)
    result = pipeline.stylize_video(random_weights, src, [style_png], tmp_path / "o.mkv",
                                    pipeline.VideoSettings(batch=5, codec="ffv1", style_size=0), progress=False)
    assert result.frames == 40 and len(ahead) == 8
    # Queued for compute + held by the reader thread while the queue is full.
    assert max(ahead) <= pipeline._QUEUE_BATCHES + 1, ahead


def test_smoothing_refuses_a_decoder_variant_it_would_run_as_the_plain_network():
    from adain_jax.model import networks, variants

    weights = networks.init_weights(0, variants.DecoderVariant(input_norm="imagenet"))
    frames = np.zeros((2, 16, 16, 3), np.float32)
    stats = np.ones((1, 1, 512), np.float32)
    with pytest.raises(ValueError, match=r"--smooth supports the plain AdaIN decoder only.*input_norm=imagenet"):
        temporal.stylize_smoothed(weights, frames, stats, stats, temporal.initial_carry(1), False, 0.5, 2)


@pytest.mark.parametrize("stage", ["read", "compute", "write"])
def test_an_error_in_any_stage_stops_the_run_and_leaves_no_file(random_weights, style_png, tmp_path, monkeypatch,
                                                                stage):
    src = make_video(tmp_path / "in.mp4", moving_shapes(), audio=False)
    failure = RuntimeError(f"{stage} failed (simulated)")
    real_read, real_call, real_write = pipeline._read_chunks, pipeline._BatchProgram.__call__, container.VideoWriter.write

    def read(*args):
        for i, chunk in enumerate(real_read(*args)):
            if stage == "read" and i == 1:
                raise failure
            yield chunk

    def call(self, chunk, _calls=[0]):
        _calls[0] += 1
        if stage == "compute" and _calls[0] == 2:
            raise failure
        return real_call(self, chunk)

    def write(self, rgb, pts, time_base, _frames=[0]):
        _frames[0] += 1
        if stage == "write" and _frames[0] == 3:
            raise failure
        return real_write(self, rgb, pts, time_base)

    monkeypatch.setattr(pipeline, "_read_chunks", read)
    monkeypatch.setattr(pipeline._BatchProgram, "__call__", call)
    monkeypatch.setattr(container.VideoWriter, "write", write)
    with pytest.raises(RuntimeError, match=f"{stage} failed"):
        pipeline.stylize_video(random_weights, src, [style_png], tmp_path / "out.mkv",
                               pipeline.VideoSettings(batch=2, codec="ffv1", style_size=0), progress=False)
    assert not (tmp_path / "out.mkv").exists() and not list(tmp_path.glob(".*"))
