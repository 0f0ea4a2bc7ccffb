"""Video style transfer: `stylize_video` (files in, files out) and the flicker metric.

    from adain_jax import video
    video.stylize_video(weights, "clip.mp4", ["style.jpg"], "out.mp4", video.VideoSettings(batch=8, blend=0.6))
    video.flicker.video_warping_error("out.mp4", "clip.mp4")

Modules: `container` (PyAV reading/writing, audio passthrough), `temporal` (smoothed content
statistics), `pipeline` (batches, devices), `stages` (the reader, compute and writer threads),
`flicker` (warping error, OpenCV optical flow).
"""

from adain_jax.video.container import VideoError
from adain_jax.video.pipeline import VideoResult, VideoSettings, stylize_video

__all__ = ["VideoError", "VideoResult", "VideoSettings", "stylize_video"]
