"""Videos and animated images: frames stylized in order, each consistent with the one before.

`flow` estimates the optical flow, warps along it and finds occlusions; `driver.run_video`
streams the frames through a method's ``stylize_frames``, keeps every finished frame so that a
re-run resumes, and encodes the output at the end (`jaxstyle.io.video`).
"""

from jaxstyle.video.driver import FrameDone, VideoStarted, run_video

__all__ = ["FrameDone", "VideoStarted", "run_video"]
