"""GStreamer pipeline strings and the OpenCV build check."""
from __future__ import annotations

import pytest

from edge.gstreamer import (
    csi_pipeline,
    opencv_has_gstreamer,
    require_gstreamer,
    rtsp_pipeline,
    rtsp_pipeline_software,
)

SINK = "appsink drop=1 max-buffers=1 sync=false"


def _elements(pipeline: str) -> list[str]:
    return [part.strip().split(" ")[0].rstrip(",") for part in pipeline.split("!")]


def test_csi_pipeline() -> None:
    p = csi_pipeline(sensor_id=1, width=1920, height=1080, fps=30, flip_method=2)
    assert p == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=1920, height=1080, format=NV12, "
        "framerate=30/1 ! nvvidconv flip-method=2 ! video/x-raw, format=BGRx ! videoconvert ! "
        f"video/x-raw, format=BGR ! {SINK}"
    )
    assert "framerate=30000/1001" in csi_pipeline(fps=30000 / 1001)
    assert "framerate=15/2" in csi_pipeline(fps=7.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sensor_id=-1), "sensor_id must be an integer >= 0"),
    (dict(sensor_id=True), "sensor_id"),
    (dict(width=0), "width must be a positive integer"),
    (dict(height=720.5), "height must be a positive integer"),
    (dict(fps=0), r"fps must be a number in \(0, 1000\]"),
    (dict(fps="30"), "fps must be a number"),
    (dict(flip_method=8), "flip_method must be one of 0..7"),
])
def test_csi_pipeline_rejects_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        csi_pipeline(**kwargs)


def test_rtsp_hardware_pipeline() -> None:
    p = rtsp_pipeline("rtsp://10.0.0.5:554/stream1", codec="h265", latency_ms=100)
    assert p.startswith('rtspsrc location="rtsp://10.0.0.5:554/stream1" latency=100 protocols=tcp ! ')
    assert _elements(p) == ["rtspsrc", "rtph265depay", "h265parse", "nvv4l2decoder", "nvvidconv",
                            "video/x-raw", "videoconvert", "video/x-raw", "appsink"]
    assert p.endswith(f"format=BGR ! {SINK}")
    scaled = rtsp_pipeline("rtsp://h/s", width=640, height=360, tcp=False)
    assert "protocols" not in scaled and "video/x-raw, format=BGRx, width=640, height=360 !" in scaled


def test_rtsp_software_pipeline() -> None:
    p = rtsp_pipeline_software("rtsps://h/s", latency_ms=0)
    assert _elements(p) == ["rtspsrc", "rtph264depay", "h264parse", "avdec_h264", "videoconvert",
                            "video/x-raw", "appsink"]
    scaled = rtsp_pipeline_software("rtsp://h/s", width=640, height=360)
    assert "avdec_h264 ! videoscale ! video/x-raw, width=640, height=360 ! videoconvert" in scaled


@pytest.mark.parametrize("kwargs, message", [
    (dict(url="http://h/s"), "url must start with one of rtsp://"),
    (dict(url='rtsp://h/s" ! fakesink name="x'), "must not contain whitespace, quotes"),
    (dict(url="rtsp://h/my stream"), "%20"),
    (dict(url="rtsp://h/s", codec="mjpeg"), "codec must be one of h264, h265"),
    (dict(url="rtsp://h/s", latency_ms=-5), "latency_ms must be an integer >= 0"),
    (dict(url="rtsp://h/s", width=640), "give both width and height or neither"),
    (dict(url="rtsp://h/s", width=640, height=0), "height must be a positive integer"),
])
def test_rtsp_pipelines_reject_bad_parameters(kwargs: dict, message: str) -> None:
    for build in (rtsp_pipeline, rtsp_pipeline_software):
        with pytest.raises(ValueError, match=message):
            build(**kwargs)


def test_opencv_has_gstreamer_reads_the_build_information() -> None:
    assert opencv_has_gstreamer("  Video I/O:\n    FFMPEG:   YES\n    GStreamer:        YES (1.20.3)\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    assert not opencv_has_gstreamer("no video section at all")
    with pytest.raises(RuntimeError, match="built without GStreamer.*JetPack"):
        require_gstreamer("    GStreamer:   NO\n")
    require_gstreamer("    GStreamer:   YES (1.20.3)\n")
    assert isinstance(opencv_has_gstreamer(), bool)  # this machine's build parses either way
