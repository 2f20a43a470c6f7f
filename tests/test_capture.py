"""Camera capture on real files, a real image sequence and a real (silent) HTTP server."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import (
    CameraCapture,
    CameraSpec,
    CameraState,
    CameraStatus,
    CaptureOptions,
    SourceKind,
    backoff_delay,
    check_file_source,
    measured_fps,
    parse_source,
    redact,
)
from edge.configfile import ConfigError, load_config

FAST = dict(open_timeout_s=2.0, read_timeout_s=2.0, backoff_base_s=0.05, backoff_cap_s=0.2,
            backoff_jitter=0.0)


def _level(i: int) -> int:
    """Grey level of frame i in the test videos (steps of 20 survive mp4v compression)."""
    return (i * 20) % 240 + 10


def _write_video(path: Path, frames: int, fps: float = 25.0, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), _level(i), np.uint8))
    writer.release()
    return path


def _index_of(image: np.ndarray) -> int:
    """Recover the frame number (mod 12) from the grey level written by _write_video."""
    return int(round((float(image.mean()) - 10) / 20)) % 12


def _read_all(cam: CameraCapture, timeout: float = 10.0) -> list:
    frames, deadline = [], time.monotonic() + timeout
    while not cam.finished and time.monotonic() < deadline:
        frame = cam.get(0.5)
        if frame is not None:
            frames.append(frame)
    return frames


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(autouse=True)
def no_thread_leak():
    before = set(threading.enumerate())
    yield
    leaked: list[threading.Thread] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.name.startswith("capture[")]
        if not leaked:
            break
        time.sleep(0.05)
    assert not leaked, f"capture threads left running: {[t.name for t in leaked]}"


# -- parsing ---------------------------------------------------------------------------------------

def test_parse_v4l2_file_and_images(tmp_path: Path) -> None:
    assert parse_source("0") == CameraSpec("video0", SourceKind.V4L2, 0, cv2.CAP_V4L2, "0")
    assert parse_source("/dev/video2").target == "/dev/video2"
    spec = parse_source("clips/Gate Cam.mp4")
    assert (spec.kind, spec.name, spec.target) == (SourceKind.FILE, "Gate-Cam", "clips/Gate Cam.mp4")
    assert spec.is_file
    assert parse_source("file:///data/a.mp4").target == "/data/a.mp4"
    images = parse_source("shots/frame_%05d.png")
    assert (images.kind, images.api, images.name) == (SourceKind.IMAGES, cv2.CAP_IMAGES, "shots")
    odd = tmp_path / "a=b.mp4"  # an existing file whose name has '=' is a file, not name=source
    odd.touch()
    assert parse_source(str(odd)).target == str(odd)


def test_parse_names_urls_and_redaction() -> None:
    spec = parse_source("door=rtsp://admin:s3cret@10.0.0.5:554/Streaming/Channels/101")
    assert (spec.name, spec.kind, spec.api) == ("door", SourceKind.URL, cv2.CAP_FFMPEG)
    assert spec.target.endswith("s3cret@10.0.0.5:554/Streaming/Channels/101")
    assert "s3cret" not in spec.display and "admin:***@" in spec.display
    derived = parse_source("rtsp://admin:s3cret@10.0.0.5/live.sdp")
    assert derived.name == "10.0.0.5-live" and "s3cret" not in derived.name
    # a query string with '=' is not a name
    assert parse_source("http://cam.local/video.mjpg?res=hi").kind is SourceKind.URL
    assert redact('rtspsrc location="rtsp://u:p@h/x" ! x') == 'rtspsrc location="rtsp://u:***@h/x" ! x'
    with pytest.raises(ValueError, match="unsupported scheme 'ftp'"):
        parse_source("ftp://u:pw@host/x.mp4")
    with pytest.raises(ValueError, match="non-empty"):
        parse_source("  ")


def test_parse_csi_and_gstreamer() -> None:
    spec = parse_source("yard=csi://1?width=1920&height=1080&fps=30&flip=2")
    assert (spec.name, spec.kind, spec.api) == ("yard", SourceKind.GSTREAMER, cv2.CAP_GSTREAMER)
    assert "sensor-id=1" in spec.target and "width=1920, height=1080" in spec.target
    assert "framerate=30/1" in spec.target and "flip-method=2" in spec.target
    assert parse_source("csi://0").name == "csi0"
    with pytest.raises(ValueError, match="unknown option 'exposure'"):
        parse_source("csi://0?exposure=3")
    with pytest.raises(ValueError, match="fps='fast' is not a number"):
        parse_source("csi://0?fps=fast")
    with pytest.raises(ValueError, match="csi://<sensor id>"):
        parse_source("csi://left")
    gst = parse_source("gst:videotestsrc ! videoconvert ! appsink")
    assert gst.target == "videotestsrc ! videoconvert ! appsink" and gst.name.startswith("gst-")
    with pytest.raises(ValueError, match="must end in an appsink"):
        parse_source("gst:videotestsrc ! fakesink")


# -- pure helpers ----------------------------------------------------------------------------------

def test_backoff_delay_doubles_caps_and_jitters_down() -> None:
    assert [backoff_delay(a, 0.5, 3.0) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(2, 0.5, 3.0, jitter=0.2, u=0.5) == pytest.approx(2.0 * 0.9)
    assert backoff_delay(10_000, 1.0, 30.0, jitter=0.2, u=0.0) == 30.0  # no overflow


def test_measured_fps() -> None:
    assert measured_fps([]) == 0.0 and measured_fps([1.0]) == 0.0
    assert measured_fps([0.0, 0.1, 0.2, 0.5]) == pytest.approx(6.0)


def test_options_validation_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="open_timeout_s"):
        CaptureOptions(open_timeout_s=0)
    with pytest.raises(ValueError, match="queue_size"):
        CaptureOptions(queue_size=0)
    with pytest.raises(ValueError, match="backoff_jitter"):
        CaptureOptions(backoff_jitter=1.5)
    path = tmp_path / "capture.yaml"
    path.write_text("loop: true\nqueue_sise: 4\n")
    with pytest.raises(ConfigError, match="did you mean 'queue_size'"):
        load_config(CaptureOptions, path)
    path.write_text("loop: true\nqueue_size: 4\n")
    options = load_config(CaptureOptions, path, ["backoff_cap_s=5"])
    assert (options.loop, options.queue_size, options.backoff_cap_s) == (True, 4, 5.0)
    assert CaptureOptions(open_timeout_s=3, read_timeout_s=7).watchdog_limit_s == 12
    assert CaptureOptions(watchdog_s=0.5).watchdog_limit_s == 0.5


# -- files -----------------------------------------------------------------------------------------

def test_file_ends_with_every_wanted_frame_in_order(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "clip.mp4", frames=30)
    seen: list[CameraStatus] = []
    options = CaptureOptions(realtime=False, queue_size=2, **FAST)
    with CameraCapture(str(path), options, wants=lambda i: i % 4 == 0, on_status=seen.append) as cam:
        frames = _read_all(cam)
        stats = cam.stats()
    assert [f.index for f in frames] == list(range(0, 30, 4))  # lossless when not paced
    assert all(_index_of(f.image) == f.index % 12 for f in frames)  # the index is the file's frame number
    assert {f.segment for f in frames} == {0} and frames[0].image.shape == (48, 64, 3)
    assert [s.state for s in seen] == [CameraState.CONNECTING, CameraState.ONLINE, CameraState.ENDED]
    assert (stats.frames_read, stats.delivered, stats.skipped, stats.dropped) == (30, 8, 22, 0)
    assert stats.state is CameraState.ENDED and stats.reconnects == 0


def test_real_video_reads_to_the_end(scene_video: Path) -> None:
    path = scene_video
    wake = threading.Event()
    with CameraCapture(f"park={path}", CaptureOptions(realtime=False, queue_size=4, **FAST),
                       wants=lambda i: i % 16 == 0, wake=wake) as cam:
        assert wake.wait(10)
        frames = _read_all(cam)
    assert cam.name == "park"
    assert [f.index for f in frames] == list(range(0, 377, 16))  # 377 frames in the file
    assert frames[0].image.shape == (432, 768, 3)


def test_video_file_name_with_percent_is_taken_literally(scene_video: Path, tmp_path: Path) -> None:
    path = tmp_path / "gate_%d_100%.mp4"  # as an image-sequence pattern this would be "invalid multiple patterns"
    shutil.copy(scene_video, path)
    spec = parse_source(f"gate={path}")
    assert (spec.kind, spec.api, spec.target) == (SourceKind.FILE, cv2.CAP_FFMPEG, str(path))
    with CameraCapture(spec, CaptureOptions(realtime=False, queue_size=4, **FAST),
                       wants=lambda i: i % 16 == 0) as cam:
        frames = _read_all(cam)
        stats = cam.stats()
    assert [f.index for f in frames] == list(range(0, 377, 16))  # every frame of the file
    assert frames[0].image.shape == (432, 768, 3)
    assert (stats.state, stats.frames_read) == (CameraState.ENDED, 377)
    assert parse_source(str(tmp_path / "shots" / "frame_%05d.png")).kind is SourceKind.IMAGES  # no such file
    assert parse_source(str(tmp_path / "not yet 100%.mp4")).kind is SourceKind.FILE  # no printf integer


def test_loop_restarts_as_new_segments(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "short.mp4", frames=10)
    seen: list[CameraStatus] = []
    with CameraCapture(str(path), CaptureOptions(realtime=False, loop=True, queue_size=3, **FAST),
                       on_status=seen.append) as cam:
        frames = [cam.get(5.0) for _ in range(25)]
    assert [(f.segment, f.index) for f in frames] == [(s, i) for s in range(3) for i in range(10)][:25]
    assert [s.state for s in seen][:2] == [CameraState.CONNECTING, CameraState.ONLINE]
    assert CameraState.ENDED not in [s.state for s in seen] and cam.stats().reconnects == 0
    assert seen[-1].state is CameraState.OFFLINE and seen[-1].reason == "stopped"


def test_realtime_pacing_follows_the_file_fps(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "paced.mp4", frames=20, fps=20.0)
    start = time.monotonic()
    with CameraCapture(str(path), CaptureOptions(realtime=True, queue_size=32, **FAST)) as cam:
        frames = _read_all(cam)
        fps = cam.stats().fps
    elapsed = time.monotonic() - start
    assert len(frames) == 20
    assert 0.8 < elapsed < 8.0  # 20 frames at 20 fps: about 1 s, never a burst
    assert 10.0 < fps < 30.0
    gaps = np.diff([f.timestamp for f in frames])
    assert np.median(gaps) > 0.025


def test_newest_frame_policy_counts_drops_for_a_slow_consumer(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "fast.mp4", frames=40, fps=100.0)
    with CameraCapture(str(path), CaptureOptions(realtime=True, queue_size=1, **FAST)) as cam:
        taken = []
        while not cam.finished:
            frame = cam.get(1.0)
            if frame is not None:
                taken.append(frame.index)
                time.sleep(0.08)  # a consumer slower than the camera
        stats = cam.stats()
    assert stats.frames_read == 40 and stats.dropped > 10
    assert stats.delivered + stats.dropped == 40  # every frame is either taken or counted as dropped
    assert taken == sorted(taken) and taken[-1] == 39  # the consumer always gets the newest


def test_resolution_change_is_passed_on_and_counted(tmp_path: Path) -> None:
    for i, (w, h) in enumerate([(64, 48)] * 3 + [(96, 72)] * 3):
        cv2.imwrite(str(tmp_path / f"f_{i:03d}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    options = CaptureOptions(realtime=False, queue_size=2, **FAST)
    with CameraCapture(str(tmp_path / "f_%03d.png"), options) as cam:
        frames = _read_all(cam)
        stats = cam.stats()
    assert [f.image.shape[:2] for f in frames] == [(48, 64)] * 3 + [(72, 96)] * 3
    assert stats.resolution_changes == 1 and stats.state is CameraState.ENDED


# -- failures --------------------------------------------------------------------------------------

def test_why_a_file_cannot_be_read(tmp_path: Path) -> None:
    """'no such file' and 'not a readable video' are told apart, in the up-front check and in the camera's state."""
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    video = _write_video(tmp_path / "ok.mp4", frames=3)
    assert check_file_source(parse_source(str(tmp_path / "missing.mp4"))) == "no such file"
    assert check_file_source(parse_source(str(tmp_path))) == "not a file"
    assert check_file_source(parse_source(str(text))).startswith("not a readable video")
    assert check_file_source(parse_source(str(video))) is None
    assert check_file_source(parse_source("rtsp://cam.local/x")) is None  # live sources are checked by connecting
    seen: list[CameraStatus] = []
    with CameraCapture(str(text), CaptureOptions(**FAST), on_status=seen.append):
        assert _wait_for(lambda: any(s.state is CameraState.OFFLINE for s in seen))
    assert "not a readable video" in next(s.reason for s in seen if s.state is CameraState.OFFLINE)


def test_an_empty_camera_name_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty camera name before '='"):
        parse_source("=clip.mp4")
    with pytest.raises(ValueError, match="empty camera name") as err:
        parse_source(" =rtsp://u:pw@cam/x")
    assert "pw" not in str(err.value)
    (tmp_path / "=odd.mp4").touch()  # an existing file whose name starts with '=' is still that file
    assert parse_source("=odd.mp4").target == "=odd.mp4"


def test_unreadable_path_goes_offline_and_retries_with_backoff(tmp_path: Path) -> None:
    seen: list[CameraStatus] = []
    options = CaptureOptions(**{**FAST, "backoff_base_s": 0.05, "backoff_cap_s": 0.4})
    cam = CameraCapture(str(tmp_path / "missing.mp4"), options, on_status=seen.append).start()
    assert _wait_for(lambda: cam.stats().reconnects >= 4)
    assert cam.get(0.05) is None
    assert cam.stop(timeout=5.0)
    offline = [s for s in seen if s.state is CameraState.OFFLINE and s.reason != "stopped"]
    assert len(offline) >= 4 and all("cannot open" in s.reason and ": no such file;" in s.reason for s in offline)
    delays = [float(s.reason.rsplit(" in ", 1)[1].split()[0]) for s in offline]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4]  # doubling up to the cap (no jitter here)
    assert seen[-1].reason == "stopped" and cam.finished


def test_file_appearing_later_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "late.mp4"
    with CameraCapture(str(path), CaptureOptions(realtime=False, **FAST)) as cam:
        assert _wait_for(lambda: cam.status.state is CameraState.OFFLINE)
        _write_video(tmp_path / "tmp.mp4", frames=5).rename(path)
        assert [f.index for f in _read_all(cam)] == [0, 1, 2, 3, 4]
        assert cam.status.state is CameraState.ENDED and cam.stats().reconnects >= 1


class _SilentServer:
    """A TCP server that accepts connections and never answers (a hung camera)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); pending connections are reset
        self.sock.close()
        self.thread.join(2)
        for conn in self.conns:
            conn.close()


def test_open_timeout_on_a_hung_stream() -> None:
    server = _SilentServer()
    try:
        options = CaptureOptions(**{**FAST, "open_timeout_s": 0.3, "backoff_base_s": 5.0,
                                    "backoff_cap_s": 5.0})
        with CameraCapture(f"http://127.0.0.1:{server.port}/live.mp4", options) as cam:
            assert _wait_for(lambda: cam.status.state is CameraState.OFFLINE, timeout=5)
            assert "cannot open" in cam.status.reason
    finally:
        server.close()


def test_watchdog_abandons_a_stuck_reader() -> None:
    server = _SilentServer()
    try:
        # the open timeout is long; the watchdog must notice first
        options = CaptureOptions(**{**FAST, "open_timeout_s": 30.0, "watchdog_s": 0.3, "backoff_base_s": 0.1,
                                     "backoff_cap_s": 0.1})
        seen: list[CameraStatus] = []
        url = f"http://127.0.0.1:{server.port}/live.mp4"
        cam = CameraCapture(url, options, on_status=seen.append).start()
        assert _wait_for(lambda: cam.stats().reconnects >= 2, timeout=8)
        offline = [s.reason for s in seen if s.state is CameraState.OFFLINE]
        assert len(offline) >= 2 and all("(watchdog)" in r for r in offline)
    finally:
        server.close()  # the abandoned reader's open call fails now and its thread exits
    assert cam.stop(timeout=5.0)


def test_a_camera_name_that_is_not_topic_safe_is_refused(tmp_path) -> None:
    video = tmp_path / "x.mp4"
    video.write_bytes(b"")
    with pytest.raises(ValueError, match=r"camera name 'lobby/1'.*letters, digits"):
        parse_source(f"lobby/1={video}")
    with pytest.raises(ValueError, match=r"camera name 'door #2'"):
        parse_source("door #2=rtsp://cam.local/stream")
    assert parse_source(f"lobby-1={video}").name == "lobby-1"
    odd = tmp_path / "a=b.mp4"  # a file whose real name holds '=' is still a file
    odd.write_bytes(b"")
    assert parse_source(str(odd)).target == str(odd)
