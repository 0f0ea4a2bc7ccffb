"""``adain-jax video``: stylize a video file, keeping its frames, timing, orientation and sound.

    adain-jax video --content clip.mp4 --style matisse.jpg --output clip_matisse.mp4 --batch 8 --blend 0.6

A thin front end over `adain_jax.video.stylize_video`. Exit status 0 written, 1 a bad input file
(one line naming it; nothing written), 2 bad arguments or weights, 130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from adain_jax.cli import options


def _beta(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"smoothing factor must be in [0, 1), got {value}")
    return value


def _crf(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 63:
        raise argparse.ArgumentTypeError(f"crf must be in 0..63, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", required=True, type=pathlib.Path, metavar="VIDEO", help="content video file")
    parser.add_argument("--style", required=True, metavar="FILE[,FILE...]",
                        help="style image, comma-separated style images (for --style-weights / --mask), or a "
                             "style video with as many frames as the content (frame i styles frame i)")
    parser.add_argument("--output", required=True, type=pathlib.Path, metavar="VIDEO",
                        help="output video; the container follows the suffix (.mp4, .mkv, .mov, .webm)")
    options.add_weights_argument(parser)
    parser.add_argument("--alpha", type=options.alpha, default=1.0, metavar="A", help="degree of stylization in [0, 1]")
    parser.add_argument("--style-weights", type=options.weights_list, default=None, metavar="W1,W2,...",
                        help="interpolate between the comma-separated styles with these weights")
    parser.add_argument("--preserve-color", action="store_true",
                        help="keep the content's colours (CORAL of the style onto every frame; the style is "
                             "then encoded per frame)")
    parser.add_argument("--mask", type=pathlib.Path, default=None, metavar="FILE",
                        help="static spatial control for every frame: with 2 styles a binary mask (white = first "
                             "style), with K > 2 a label image with values 0..K-1")
    parser.add_argument("--content-size", type=options.size, default=0, metavar="N",
                        help="stylize at this shorter side, then scale back to the frame size "
                             "(default 0: the frame size)")
    parser.add_argument("--style-size", type=options.size, default=512, metavar="N",
                        help="resize the style's shorter side to this (0 keeps the size; default 512)")
    options.add_precision_argument(parser)
    parser.add_argument("--batch", type=options.positive, default=4, metavar="N",
                        help="frames per compiled batch, rounded up to a multiple of the device count (default 4)")
    parser.add_argument("--codec", default=None,
                        help="video encoder (default libx264; libvpx-vp9 for .webm; e.g. ffv1 in .mkv is lossless)")
    parser.add_argument("--crf", type=_crf, default=None,
                        help="constant rate factor for x264/x265/vp9/av1: lower is better, 0 is lossless "
                             "(default 18 for libx264)")
    parser.add_argument("--smooth", type=_beta, default=0.0, metavar="BETA",
                        help="experimental: exponential moving average of the content's relu4_1 statistics "
                             "across frames with this factor in [0, 1), e.g. 0.9 (default 0: off). Measure with "
                             "--flicker: on our synthetic clips it does not lower the warping error")
    parser.add_argument("--blend", type=_beta, default=0.0, metavar="LAMBDA",
                        help="reduce flicker: blend each output frame with the previous one warped along the "
                             "content's optical flow (OpenCV DIS), where the flow passes a forward-backward "
                             "check; strength in [0, 1), e.g. 0.6 (default 0: off)")
    parser.add_argument("--flicker", action="store_true",
                        help="after writing, print the warping error (Lai et al. 2018) of the output and of "
                             "the content (needs opencv-python-headless)")


HELP = "stylize a video file (keeps frame count, timing, orientation and sound)"
DESCRIPTION = ("Stylize every frame of a video with one style (encoded once), K combined styles, or a style video. "
               "Frames go through one compiled program in batches, decoding and encoding overlap, and memory "
               "does not grow with the video's length.")
EPILOG = """examples:
  adain-jax video --content clip.mp4 --style matisse.jpg --output clip_matisse.mp4
  adain-jax video --content clip.mp4 --style a.jpg,b.jpg --style-weights 0.7,0.3 --output mix.mp4 --blend 0.6
  adain-jax video --content clip.mov --style a.jpg,b.jpg --mask mask.png --output masked.mov --batch 8
  adain-jax video --content clip.mp4 --style brush.jpg --output exact.mkv --codec ffv1 --flicker
  adain-jax video --content clip.mp4 --style brush.jpg --output steady.mp4 --blend 0.6 --flicker

exit status: 0 written, 1 bad input file (nothing written), 2 bad arguments or weights, 130 interrupted.
"""


def run(args) -> int:
    """The ``video`` subcommand; returns the exit status."""
    from adain_jax.io import images as image_io
    from adain_jax.io import weights as weights_lib
    from adain_jax.video import VideoError, VideoSettings, pipeline

    styles = [pathlib.Path(s) for s in args.style.split(",")]
    settings = VideoSettings(alpha=args.alpha, style_weights=args.style_weights, preserve_color=args.preserve_color,
                             mask=args.mask, content_size=args.content_size, style_size=args.style_size,
                             batch=args.batch, codec=args.codec, crf=args.crf, smooth=args.smooth,
                             blend=args.blend, precision=options.effective_precision(args))
    try:
        style_is_video = len(styles) == 1 and pipeline.is_video_path(styles[0])
        pipeline.check_settings(args.content, styles, args.output, settings, style_is_video)
        weights = weights_lib.load_weights(args.weights)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {options.flag_message(e, crop_hint=False)}", file=sys.stderr)
        return 2
    try:
        result = pipeline.stylize_video(weights, args.content, styles, args.output, settings)
    except (VideoError, image_io.ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # settings that only the files could rule out (e.g. style sizes)
        print(f"error: {options.flag_message(e, crop_hint=False)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {args.output} was not written", file=sys.stderr)
        return 130
    audio = f", audio {result.audio}" if result.audio else ", no audio"
    print(f"wrote {result.output}: {result.frames} frames in {result.seconds:.1f} s "
          f"({result.frames / max(result.seconds, 1e-9):.2f} frames/s){audio}")
    if args.flicker:
        from adain_jax.video import flicker

        out = flicker.video_warping_error(result.output, args.content)
        src = flicker.video_warping_error(args.content)
        print(f"warping error (Lai et al. 2018, DIS flow): output {out.mean:.6f}, content {src.mean:.6f}")
    return 0
