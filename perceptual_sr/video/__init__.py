"""Video: clips upscaled frame by frame with their sound, the invented detail held steady (`video` extra)."""

from perceptual_sr.video.clip import video_output_path
from perceptual_sr.video.upscale_clip import VideoResult, measure_clip, upscale_video

__all__ = ["upscale_video", "measure_clip", "video_output_path", "VideoResult"]
