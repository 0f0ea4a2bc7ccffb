"""Video frames/s: ``adain-jax video``'s pipeline against the PyTorch port's ``test_video.py`` loop.

    python -m benchmarks.video [--lines 256,480,720] [--precision float32,bfloat16] [--frames 8] [--batch 4]

Both sides read and write the same files with PyAV and the same codec (libx264, CRF 18), with the
same seeded random weights (`benchmarks.fixtures`) and thread count. The PyTorch side does what
the port's ``test_video.py`` does for every frame: the content *and the style* through the encoder
(``style_transfer``), the decoder, clamp, uint8 - one frame at a time (its colour swap, missing
uint8 cast and integer frame rate are not reproduced; they do not change the speed). The JAX side
is `adain_jax.video.stylize_video`: the style encoded once, batches, decode/compute/encode
overlapped. Each side runs once to warm up (JAX compiles, PyTorch allocates), then ``--repeats``
timed runs, interleaved. Prints a markdown table; the ratio is the figure to read.

In bfloat16 the JAX side is ``adain-jax video --precision bfloat16`` and the PyTorch loop runs
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with channels_last networks and frames, PyTorch's
fastest bfloat16 form on a CPU (as ``benchmarks.torch_side``'s ``bf16`` mode).
"""

from __future__ import annotations

import argparse
import copy
import fractions
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
WIDTHS = {256: 456, 360: 640, 480: 854, 720: 1280, 1080: 1920}  # 16:9, even widths


def _make_video(path, lines: int, frames: int) -> None:
    import av

    from benchmarks import fixtures

    width = WIDTHS.get(lines, (lines * 16 // 9) // 2 * 2)
    # A smooth picture panning one pixel a frame: real motion for the decoder and encoder.
    wide = (fixtures.images(3, 1, width + frames)[0][:lines] * 255 + 0.5).astype(np.uint8)
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=fractions.Fraction(30000, 1001), options={"crf": "18"})
    stream.width, stream.height, stream.pix_fmt = width, lines, "yuv420p"
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, i:i + width]), format="rgb24")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode())
    out.close()


def _torch_loop(vgg, decoder, style_nchw, src, dst, bf16: bool = False) -> int:
    """test_video.py's loop: per frame, style_transfer(vgg, decoder, content, style) and write
    (``bf16``: under bfloat16 autocast, networks and frames channels_last)."""
    import contextlib

    import av
    import torch

    from benchmarks.fixtures import _reference

    ref = _reference()
    count = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate, options={"crf": "18"})
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        for frame in inp.decode(vin):
            content = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float() / 255
            if bf16:
                content = content.contiguous(memory_format=torch.channels_last)
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.no_grad(), autocast:
                out_t = ref.style_transfer(vgg, decoder, content, style_nchw, 1.0)
            h, w = content.shape[2:]
            pixels = (out_t[0, :, :h, :w].float().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).contiguous().numpy()
            encoded = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            encoded.pts = frame.pts
            encoded.time_base = frame.time_base
            out.mux(vout.encode(encoded))
            count += 1
        out.mux(vout.encode())
    return count


def measure(lines=(256, 480, 720), frames=8, batch=4, style_size=256, repeats=1, threads=None,
            precisions=("float32",)) -> list[dict]:
    """One row per frame height and precision: frames/s of both sides (medians of ``repeats`` timed runs)."""
    from benchmarks import fixtures as bench_fixtures

    threads = bench_fixtures.configure_threads(threads)
    import torch

    import adain_jax  # noqa: F401  (its XLA flags first)
    from adain_jax.io import images as image_io
    from adain_jax.video import VideoSettings, stylize_video
    from benchmarks import fixtures
    from convert import torch_layout

    torch.set_num_threads(threads)
    ref = fixtures._reference()
    vgg_sd, dec_sd = fixtures.state_dicts()
    weights = torch_layout.weights_from_torch("vgg_normalised.pth", vgg_sd, "decoder.pth", dec_sd)
    vgg, decoder = ref.load_networks({k: torch.from_numpy(v) for k, v in vgg_sd.items()},
                                     {k: torch.from_numpy(v) for k, v in dec_sd.items()})
    last = [copy.deepcopy(net).to(memory_format=torch.channels_last) for net in (vgg, decoder)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        style_png = tmp / "style.png"
        image_io.save_image(style_png, fixtures.images(11, 1, style_size)[0])
        style_nchw = ref.nhwc_to_nchw(image_io.load_image(style_png)[None])
        for height in lines:
            src = tmp / f"in{height}.mp4"
            _make_video(src, height, frames)
            for precision in precisions:
                bf16 = precision == "bfloat16"
                settings = VideoSettings(batch=batch, style_size=0, precision=precision)
                nets = last if bf16 else (vgg, decoder)
                style = style_nchw.contiguous(memory_format=torch.channels_last) if bf16 else style_nchw
                sides = {
                    "jax": lambda settings=settings, src=src: stylize_video(
                        weights, src, [style_png], tmp / "jax.mp4", settings, progress=False).frames,
                    "torch": lambda nets=nets, style=style, bf16=bf16, src=src: _torch_loop(
                        *nets, style, src, tmp / "torch.mp4", bf16),
                }
                times: dict[str, list[float]] = {name: [] for name in sides}
                for name, fn in sides.items():  # warm-up: JAX compiles, PyTorch allocates
                    print(f"[video {height} {precision}] warm-up {name}", file=sys.stderr, flush=True)
                    assert fn() == frames
                for r in range(repeats):
                    for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                        t0 = time.perf_counter()
                        sides[name]()
                        times[name].append(time.perf_counter() - t0)
                row = {"lines": height, "width": WIDTHS.get(height), "precision": precision, "frames": frames,
                       "batch": batch, "threads": threads,
                       "jax_fps": frames / statistics.median(times["jax"]),
                       "torch_fps": frames / statistics.median(times["torch"])}
                print(f"[video {height} {precision}] {row}", file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    r0 = rows[0]
    lines = [(f"Video: {r0['frames']} frames per clip, batch {r0['batch']}, {r0['threads']} threads, "
              f"libx264 CRF 18 on both sides, random weights"), "",
             "| frame | precision | adain-jax video (frames/s) | PyTorch test_video.py loop (frames/s) | speed-up |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['width']}x{r['lines']} | {r.get('precision', 'float32')} | {r['jax_fps']:.3f} | "
                     f"{r['torch_fps']:.3f} | {r['jax_fps'] / r['torch_fps']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.video", description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", default="256,480,720", help="frame heights (16:9 frames)")
    p.add_argument("--precision", default="float32",
                   help="comma-separated precisions, each against PyTorch in the same precision "
                        "(float32, bfloat16; default float32)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    p.add_argument("--batch", type=int, default=4, help="adain-jax video --batch (default 4)")
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per side after the warm-up")
    p.add_argument("--threads", type=int, default=None, help="threads for both (default: every usable core)")
    p.add_argument("--json", type=pathlib.Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    from adain_jax import extras

    extras.exit_if_missing("bench", "python -m benchmarks.video")
    extras.exit_if_missing("video", "python -m benchmarks.video")
    from adain_jax import precision as precision_lib

    try:
        precisions = tuple(precision_lib.parse(x) for x in args.precision.split(","))
    except ValueError as e:
        p.error(f"--precision: {e}")
    rows = measure([int(x) for x in args.lines.split(",")], args.frames, args.batch, args.style_size,
                   args.repeats, args.threads, precisions)
    print(markdown(rows))
    if args.json:
        import json

        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
