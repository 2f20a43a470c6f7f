"""GStreamer pipeline strings for OpenCV's ``CAP_GSTREAMER`` backend on a Jetson (and a software fallback).

Every pipeline ends in ``appsink drop=1 max-buffers=1 sync=false``: the sink keeps only the newest decoded
frame, so a slow consumer never makes the camera or the network stream back up (drops happen in the sink
and the capture thread counts what it skips). Frames leave the pipeline as packed BGR, what OpenCV expects.

The builders only format strings and validate their parameters; whether the pipeline runs depends on the
OpenCV build (:func:`opencv_has_gstreamer`) and on the device's plugins (``nvarguscamerasrc``,
``nvv4l2decoder`` and ``nvvidconv`` come with JetPack).
"""
from __future__ import annotations

import re
from fractions import Fraction

import cv2

CODECS = ("h264", "h265")
# Flip methods of nvvidconv: 0 none, 1 ccw 90, 2 180, 3 cw 90, 4 horizontal, 5 upper-right diagonal,
# 6 vertical, 7 upper-left diagonal.
FLIP_METHODS = range(8)

_APPSINK = "appsink drop=1 max-buffers=1 sync=false"
_TO_BGR = "videoconvert ! video/x-raw, format=BGR"
_URL_SCHEMES = ("rtsp://", "rtsps://", "rtspt://")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _framerate(fps: float) -> str:
    """Caps framerate as a fraction: 30 -> '30/1', 29.97 -> '30000/1001'."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise ValueError(f"fps must be a number in (0, 1000], got {fps!r}")
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def _scale_caps(width: int | None, height: int | None) -> str:
    """Optional ``, width=W, height=H`` for a scaler's output caps (both or neither)."""
    if (width is None) != (height is None):
        raise ValueError(f"give both width and height or neither, got width={width!r} height={height!r}")
    if width is None:
        return ""
    return f", width={_positive_int('width', width)}, height={_positive_int('height', height)}"


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30,
                 flip_method: int = 0) -> str:
    """A Jetson CSI camera (``nvarguscamerasrc``) as BGR frames.

    The sensor mode is picked by ``width``/``height``/``fps``; ``nvvidconv`` leaves NVMM memory (and flips),
    ``videoconvert`` turns BGRx into BGR.
    """
    if isinstance(sensor_id, bool) or not isinstance(sensor_id, int) or sensor_id < 0:
        raise ValueError(f"sensor_id must be an integer >= 0, got {sensor_id!r}")
    if flip_method not in FLIP_METHODS:
        raise ValueError(f"flip_method must be one of 0..7 (nvvidconv flip-method), got {flip_method!r}")
    caps = (f"video/x-raw(memory:NVMM), width={_positive_int('width', width)}, "
            f"height={_positive_int('height', height)}, format=NV12, framerate={_framerate(fps)}")
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! {caps} ! nvvidconv flip-method={flip_method} ! "
            f"video/x-raw, format=BGRx ! {_TO_BGR} ! {_APPSINK}")


def _rtsp_source(url: str, codec: str, latency_ms: int, tcp: bool) -> str:
    if not isinstance(url, str) or not url.lower().startswith(_URL_SCHEMES):
        raise ValueError(f"url must start with one of {', '.join(_URL_SCHEMES)}, got {url!r}")
    if re.search(r'[\s"\\!]', url):
        raise ValueError("url must not contain whitespace, quotes, backslashes or '!' "
                         "(percent-encode them, e.g. %20 for a space)")
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    if isinstance(latency_ms, bool) or not isinstance(latency_ms, int) or latency_ms < 0:
        raise ValueError(f"latency_ms must be an integer >= 0, got {latency_ms!r}")
    protocols = " protocols=tcp" if tcp else ""
    return f'rtspsrc location="{url}" latency={latency_ms}{protocols} ! rtp{codec}depay ! {codec}parse'


def rtsp_pipeline(url: str, codec: str = "h264", latency_ms: int = 200, *, tcp: bool = True,
                  width: int | None = None, height: int | None = None) -> str:
    """An RTSP stream decoded by the Jetson's hardware decoder (``nvv4l2decoder``), optionally rescaled.

    ``tcp`` asks the server for RTP over TCP (no packet loss on busy Wi-Fi, at a little latency).
    """
    source = _rtsp_source(url, codec, latency_ms, tcp)
    return (f"{source} ! nvv4l2decoder ! nvvidconv ! video/x-raw, format=BGRx{_scale_caps(width, height)} ! "
            f"{_TO_BGR} ! {_APPSINK}")


def rtsp_pipeline_software(url: str, codec: str = "h264", latency_ms: int = 200, *, tcp: bool = True,
                           width: int | None = None, height: int | None = None) -> str:
    """The same stream decoded on the CPU (``avdec_h264``/``avdec_h265``), for machines without NVDEC."""
    source = _rtsp_source(url, codec, latency_ms, tcp)
    caps = _scale_caps(width, height)
    scale = f"videoscale ! video/x-raw{caps} ! " if caps else ""
    return f"{source} ! avdec_{codec} ! {scale}{_TO_BGR} ! {_APPSINK}"


def opencv_has_gstreamer(build_info: str | None = None) -> bool:
    """Whether this OpenCV build has the GStreamer backend (read from ``cv2.getBuildInformation()``)."""
    info = cv2.getBuildInformation() if build_info is None else build_info
    match = re.search(r"^\s*GStreamer:\s*(\S+)", info, re.MULTILINE)
    return bool(match) and match.group(1).upper() == "YES"


def require_gstreamer(build_info: str | None = None) -> None:
    """Raise a RuntimeError that says how to get GStreamer support when this OpenCV build lacks it."""
    if not opencv_has_gstreamer(build_info):
        raise RuntimeError(
            f"OpenCV {cv2.__version__} was built without GStreamer (cv2.getBuildInformation() says "
            "'GStreamer: NO'), so csi:// and gst: cameras cannot open. On a Jetson use the system OpenCV "
            "that JetPack installs (python3-opencv, built with GStreamer) instead of the pip wheel, or build "
            "OpenCV with -DWITH_GSTREAMER=ON; RTSP and files also work through FFmpeg (rtsp://... sources)."
        )
