"""Faults around the edge process: broker outage, SIGKILL during an outage, a refusing broker, broken cameras.

Everything is real: mosquitto (tests/mqtt_broker.py), ``edge/run.py`` as a subprocess with the tiny random bundle
(its head's prior anomaly probability is 0.9, so events open on any video; ``events.update_every=1`` makes every
snippet an event message), short videos written here with OpenCV, and a local MJPEG-over-HTTP camera that
stalls. The JSON-lines file the process writes is the record of what it produced; a VMS-like subscriber with a
persistent session (kept by the broker across its restarts) records what was delivered.

The helpers here (:class:`EdgeProcess`, :class:`Recorder`, :func:`check_delivery`, ...) are shared by
tests/test_security.py, tests/test_bad_input.py and tests/test_lifecycle.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.outbox import Outbox
from tests.mqtt_broker import MosquittoBroker
from tests.test_pipeline import tiny_bundle_path

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "test-dev"
PREFIX = f"cplvad/{DEVICE}"
FPS = 50.0  # test videos: 16 frames per snippet -> ~3 event messages per second when paced in real time
# short reconnects and timeouts so that faults play out in seconds
FAST = ("mqtt.reconnect_min_s=0.1", "mqtt.reconnect_max_s=0.5", "mqtt.keepalive_s=5", "stats.interval_s=0.5",
        "stats.state_interval_s=0.5", "events.update_every=1", "runtime.threads=1", "runtime.clip_batch=4",
        "capture.open_timeout_s=2", "capture.read_timeout_s=1", "capture.watchdog_s=3",
        "capture.backoff_base_s=0.2", "capture.backoff_cap_s=0.5", "shutdown_timeout_s=5")


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


# -- helpers ---------------------------------------------------------------------------------------------------
def write_video(path: Path, frames: int, fps: float = FPS, size: tuple[int, int] = (64, 48),
                fourcc: str = "mp4v") -> Path:
    """A short video of moving noise (so that every frame differs)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, edge: EdgeProcess | None = None) -> None:
    """Poll ``predicate``; fail after ``timeout`` s, or at once (with its log) if ``edge`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if edge is not None and not edge.alive():
            raise AssertionError(f"edge process exited ({edge.process.returncode}) while waiting for {what}:\n"
                                 f"{edge.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Events the process produced; a last line cut by SIGKILL (no newline yet) was never published either."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete (or empty)
    return [json.loads(line) for line in lines]


class EdgeProcess:
    """``edge/run.py`` as a subprocess; its output goes to a log file (a pipe could fill up and block it)."""

    def __init__(self, tmp: Path, bundle: Path, port: int, cameras: Sequence[str], *settings: str,
                 extra: Sequence[str] = (), env: dict[str, str] | None = None, name: str = "edge") -> None:
        self.jsonl = tmp / "events.jsonl"
        self.outbox = tmp / "state" / "outbox.sqlite3"
        self.log_path = tmp / f"{name}.log"
        self.argv = [sys.executable, str(ROOT / "edge" / "run.py"), "--bundle", str(bundle),
                     "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--device-name", DEVICE,
                     "--jsonl", str(self.jsonl), "--set", f"outbox.path={self.outbox}"]
        for setting in (*FAST, *settings):
            self.argv += ["--set", setting]
        for camera in cameras:
            self.argv += ["--camera", camera]
        self.argv += list(extra)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.jsonl)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"edge process ignored {signal.Signals(sig).name} for {timeout}s:\n{self.log()}")

    def __enter__(self) -> EdgeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()


class Recorder:
    """A VMS-like subscriber to ``<prefix>/#`` with a persistent session (QoS 1 messages queue while it is away,
    and the subscription survives a broker restart with persistence). Records (topic, payload, retain)."""

    def __init__(self, port: int, client_id: str = "vms", username: str | None = None,
                 password: str | None = None, tls: dict[str, str] | None = None) -> None:
        self.messages: list[tuple[str, str, bool]] = []  # binary payloads (snapshots) kept as their repr
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.reconnect_delay_set(0.1, 0.5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(**tls)
        self.client.on_connect = lambda c, u, flags, reason, props: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the recorder's subscription was not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            payload = message.payload.decode(errors="backslashreplace")  # never raise in paho's thread
            self.messages.append((message.topic, payload, bool(message.retain)))

    def on(self, suffix: str) -> list[str]:
        with self._lock:
            return [payload for topic, payload, _ in self.messages if topic == f"{PREFIX}/{suffix}"]

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/events")]

    def statuses(self, camera_topic: str) -> list[str]:
        return [json.loads(p)["state"] for p in self.on(f"{camera_topic}/status")]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _key(event: dict[str, Any]) -> tuple[str, int]:
    return event["camera"], event["seq"]


def delivered_all(produced: list[dict[str, Any]], recorder: Recorder) -> Callable[[], bool]:
    return lambda: {_key(e) for e in produced} <= {_key(e) for e in recorder.events()}


def check_delivery(produced: list[dict[str, Any]], delivered: list[dict[str, Any]]) -> dict[str, int]:
    """Every produced event arrived; nothing else did; a copy is a redelivery of the very same message (same
    event_id and payload); first arrivals are in seq order per camera. Returns the counts for the report
    (``report_delivery`` in tests/conftest.py)."""
    by_key = {_key(e): e for e in produced}
    assert len(by_key) == len(produced), "a (camera, seq) was produced twice"
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for event in delivered:
        assert by_key.get(_key(event)) == event, f"delivered but not produced as such: {event}"
        first.setdefault(_key(event), event)
    missing = sorted(set(by_key) - set(first))
    assert not missing, f"{len(missing)} produced event(s) never arrived: {missing[:10]}"
    for camera in {c for c, _ in first}:
        seqs = [s for c, s in first if c == camera]
        assert seqs == sorted(seqs), f"camera {camera}: first arrivals out of seq order: {seqs}"
    return {"produced": len(produced), "delivered": len(first), "duplicates": len(delivered) - len(first),
            "lost": len(missing)}


# -- 1. broker outage ------------------------------------------------------------------------------------------
def test_broker_outage_delivers_every_event_once_in_order(tiny_bundle: Path, mosquitto_bin: str, tmp_path: Path,
                                                          report_delivery: Callable) -> None:
    video = write_video(tmp_path / "cam.mp4", frames=160)
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", persistence=True) as broker, \
            Recorder(broker.port) as vms, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], "capture.realtime=true",
                        "capture.loop=true") as edge:
        wait_until(lambda: len(vms.events()) >= 3, 40, "events before the outage", edge)
        broker.stop()
        before = len(edge.events())
        wait_until(lambda: len(edge.events()) >= before + 5, 20, "events produced during the outage", edge)
        assert edge.alive()
        broker.start()
        during = len(edge.events())
        wait_until(lambda: len(edge.events()) >= during + 3 and delivered_all(edge.events()[:during], vms)(), 30,
                   "the outage's events delivered after the restart", edge)
        assert edge.stop() == 0, edge.log()[-3000:]
        produced = edge.events()
        wait_until(delivered_all(produced, vms), 15, "every event delivered")
        counts = report_delivery({**check_delivery(produced, vms.events()), "during_outage": during - before})
    assert counts["lost"] == 0 and counts["produced"] >= 11
    assert produced[-1]["type"] == "end" and produced[-1]["reason"] == "shutdown"
    with Outbox(edge.outbox) as outbox:
        assert outbox.depth() == 0
    assert "MQTT" in edge.log() and "Traceback" not in edge.log()


def test_sigkill_during_outage_then_restart_replays_the_outbox(tiny_bundle: Path, mosquitto_bin: str, tmp_path: Path,
                                                               report_delivery: Callable) -> None:
    video = write_video(tmp_path / "cam.mp4", frames=160)
    settings = ("capture.realtime=true", "capture.loop=true")
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", persistence=True) as broker, Recorder(broker.port) as vms:
        with EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], *settings, name="edge1") as first:
            wait_until(lambda: len(vms.events()) >= 2, 40, "events before the outage", first)
            broker.stop()
            before = len(first.events())
            wait_until(lambda: len(first.events()) >= before + 5, 20, "events produced during the outage", first)
            first.stop(signal.SIGKILL)
        stranded = first.events()
        with Outbox(first.outbox) as outbox:
            stranded_depth = outbox.depth()
        assert stranded_depth >= len(stranded) - len({_key(e) for e in vms.events()}) >= 5
        broker.start()
        with EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], *settings, name="edge2") as second:
            wait_until(delivered_all(stranded, vms), 30, "the killed process's events replayed", second)
            wait_until(lambda: len(second.events()) > len(stranded) + 2, 20, "new events after the restart")
            assert second.stop() == 0, second.log()[-3000:]
        produced = second.events()
        wait_until(delivered_all(produced, vms), 15, "every event delivered")
        counts = report_delivery({**check_delivery(produced, vms.events()), "before_kill": len(stranded),
                                  "outbox_after_kill": stranded_depth})
    assert counts["lost"] == 0 and len(stranded) >= 7
    assert "to replay" in second.log()  # the outbox announced its backlog
    seqs = [e["seq"] for e in produced]
    assert seqs == list(range(1, len(produced) + 1))  # one sequence across the kill, no gap, no reuse


# -- 2. broker refusing ----------------------------------------------------------------------------------------
def test_refused_login_keeps_running_buffers_within_the_cap_and_reports_drops(tiny_bundle: Path, mosquitto_bin: str,
                                                                              tmp_path: Path,
                                                                              report_delivery: Callable) -> None:
    """The broker refuses the device's password until it is rotated on the broker; the outbox holds the newest
    ``max_rows`` events meanwhile, drops the oldest with a counter, and the stats topic reports both."""
    secret = "edge-pw-7Qx"
    users = {"vms": "vms-pw", "edge": "some-other-pw"}
    video = write_video(tmp_path / "cam.mp4", frames=160)
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", users=users, persistence=True) as broker, \
            Recorder(broker.port, username="vms", password="vms-pw") as vms, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], "capture.realtime=true",
                        "capture.loop=true", "outbox.max_rows=4", "mqtt.username=edge", "mqtt.password_env=EDGE_PW",
                        env={"EDGE_PW": secret}) as edge:
        wait_until(lambda: len(edge.events()) >= 10 and "refused the connection" in edge.log(), 40,
                   "events produced while refused", edge)
        assert edge.alive() and not vms.events()
        text = edge.log()
        assert "ERROR" in text and "check mqtt.username" in text and secret not in text
        assert "outbox" in text and "full (max_rows=4" in text  # the cap is announced
        broker.stop()  # the broker now accepts the device's password, same port, same sessions
        MosquittoBroker(mosquitto_bin, tmp_path / "broker", users={**users, "edge": secret}, persistence=True,
                        port=broker.port)
        broker.start()
        wait_until(lambda: any(json.loads(s)["outbox"]["dropped"] > 0 for s in vms.on("stats")), 30,
                   "stats reporting the drops", edge)
        assert edge.stop() == 0, edge.log()[-3000:]
        produced = edge.events()
        with Outbox(edge.outbox) as outbox:
            dropped, depth = outbox.dropped(), outbox.depth()
        wait_until(lambda: len({_key(e) for e in vms.events()}) >= len(produced) - dropped, 15, "deliveries")
        time.sleep(0.3)
        delivered = {_key(e): e for e in vms.events()}
    stats = [json.loads(s) for s in vms.on("stats")]
    assert all(s["outbox"]["depth"] <= 4 for s in stats) and depth == 0
    assert secret not in "".join(p for _, p, _ in vms.messages)
    # exactly the oldest `dropped` events are lost, everything after them arrived
    lost = [e for e in produced if _key(e) not in delivered]
    report_delivery({"produced": len(produced), "delivered": len(delivered), "lost": len(lost),
                     "duplicates": len(vms.events()) - len(delivered), "dropped_by_cap": dropped})
    assert len(lost) == dropped > 0 and lost == produced[:dropped]
    assert all(delivered[_key(e)] == e for e in produced[dropped:])


# -- 3. camera faults ------------------------------------------------------------------------------------------
class MjpegCamera:
    """An MJPEG-over-HTTP camera: streams JPEG frames; ``stall()`` stops sending (connection kept open);
    ``close()`` takes it off the network."""

    def __init__(self, fps: float = 25.0) -> None:
        self.stalled = threading.Event()
        self.closed = threading.Event()
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
        assert ok
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not outer.closed.is_set():
                        if outer.stalled.is_set():
                            time.sleep(0.05)
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg.tobytes() + b"\r\n")
                        time.sleep(1 / fps)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


def _corrupt_copy(src: Path, dst: Path) -> Path:
    """``src`` with garbage over the middle third of its bytes (frames there do not decode)."""
    data = bytearray(src.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(1).integers(0, 256, third, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def test_camera_faults_are_reported_per_camera_and_the_others_keep_running(tiny_bundle: Path, mosquitto_bin: str,
                                                                           tmp_path: Path,
                                                                           report_delivery: Callable) -> None:
    good = write_video(tmp_path / "good.mp4", frames=400)  # 8 s in real time
    short = write_video(tmp_path / "short.mp4", frames=20)
    corrupt = _corrupt_copy(write_video(tmp_path / "src.avi", frames=150, fourcc="MJPG"), tmp_path / "corrupt.avi")
    frames = tmp_path / "resize"
    frames.mkdir()
    for i in range(60):  # an image sequence whose resolution changes half way
        w, h = (64, 48) if i < 30 else (96, 72)
        cv2.imwrite(str(frames / f"f_{i:03d}.png"), np.full((h, w, 3), (i * 7) % 250, np.uint8))
    http = MjpegCamera()
    cameras = [f"good={good}", f"short={short}", f"missing={tmp_path / 'missing.mp4'}", f"corrupt={corrupt}",
               f"resize={frames / 'f_%03d.png'}", f"stall={http.url}"]
    try:
        with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker, Recorder(broker.port) as vms, \
                EdgeProcess(tmp_path, tiny_bundle, broker.port, cameras, "capture.realtime=true") as edge:
            wait_until(lambda: "online" in vms.statuses("stall") and "ended" in vms.statuses("short"), 40,
                       "the HTTP camera online and the short file ended", edge)
            http.stall()
            wait_until(lambda: vms.statuses("stall")[-1] != "online", 15, "the stalled camera reported")
            http.close()
            wait_until(lambda: vms.statuses("good")[-1:] == ["ended"], 30, "the good camera to finish")
            assert edge.alive()
            stats = json.loads(vms.on("stats")[-1])["cameras"]
            assert edge.stop() == 0, edge.log()[-3000:]
    finally:
        http.close() if not http.closed.is_set() else None
    produced = edge.events()
    assert report_delivery(check_delivery(produced, vms.events()))["lost"] == 0
    good_events = [e for e in produced if e["camera"] == "good"]
    assert good_events and good_events[-1]["type"] == "end" and good_events[-1]["reason"] == "end_of_stream"
    assert good_events[-1]["frame_end"] >= 300  # it ran through the others' faults
    assert vms.statuses("short")[-1] == "ended" and vms.statuses("resize")[-1] == "ended"
    assert "online" not in vms.statuses("missing") and vms.statuses("missing")[-1] == "offline"
    assert stats["missing"]["reconnects"] >= 2 and stats["stall"]["reconnects"] >= 1
    assert "offline" in vms.statuses("stall")
    assert vms.statuses("corrupt")[-1] in ("ended", "offline")
    assert stats["resize"]["frames_read"] == 60
    assert "Traceback" not in edge.log()


def test_image_sequence_in_real_time_is_paced_at_fallback_fps(tmp_path: Path) -> None:
    """OpenCV's image reader reports 1 fps for any sequence; real-time pacing must use ``fallback_fps`` instead
    (found by the camera-fault test above: a 60-image camera took a minute instead of 2.4 s)."""
    from edge.capture import CameraCapture, CaptureOptions

    for i in range(20):
        cv2.imwrite(str(tmp_path / f"f_{i:03d}.png"), np.full((48, 64, 3), 10 * i, np.uint8))
    options = CaptureOptions(realtime=True, fallback_fps=40.0, queue_size=32)
    started = time.monotonic()
    with CameraCapture(str(tmp_path / "f_%03d.png"), options) as camera:
        wait_until(lambda: camera.finished or camera.stats().frames_read == 20, 10, "the sequence to end")
        took = time.monotonic() - started
    assert 0.4 <= took < 3.0, f"20 images at 40 fps took {took:.2f}s"  # 0.5 s when paced right, 20 s at 1 fps


# -- load: the soak benchmark's arithmetic (bench/soak.py) ------------------------------------------------------
def test_soak_summary_by_hand() -> None:
    from bench.soak import slope_per_minute, summarise

    assert slope_per_minute([0, 1, 2, 3], [100, 101, 102, 103]) == pytest.approx(60.0)  # 1 MB/s
    assert slope_per_minute([5.0], [1.0]) == 0.0

    def at(t: float, rss: float, read: int, wanted: int, dropped: int, queued: int, snippets: int) -> dict:
        camera = {"read": read, "wanted": wanted, "dropped": dropped, "queued": queued, "snippets": snippets}
        return {"t": t, "rss_mb": rss, "cameras": {"c": camera}}

    samples = [at(0, 90, 0, 0, 0, 0, 0), at(1, 100, 50, 12, 0, 3, 2),
               at(2, 102, 100, 25, 0, 1, 5), at(3, 103, 132, 33, 1, 2, 7)]
    # second half: t 2 -> 3; 32 frames read = 2 snippets produced, 2 scored; 1 of 8 wanted frames dropped
    summary = summarise(samples, max_drop=0.01)
    assert summary["frames_per_s"] == 32.0 and summary["snippets_per_s"] == 2.0
    assert summary["scored_fraction"] == 1.0 and summary["drop_fraction"] == 0.125
    assert summary["max_queue_depth"] == 3 and summary["rss_slope_mb_per_min"] == pytest.approx(60.0)
    assert summary["real_time"] is False  # 12.5 % dropped > 1 %
    assert summarise(samples, max_drop=0.2)["real_time"] is True
    # a short window: 2 snippets produced, 1 scored (the other in progress) still holds; 0 of 3 does not
    short = [at(0, 90, 0, 0, 0, 0, 0), at(1, 90, 16, 4, 0, 0, 0), at(3, 90, 48, 12, 0, 0, 1)]
    assert summarise(short, max_drop=0.01)["scored_fraction"] == 0.5
    assert summarise(short, max_drop=0.01)["real_time"] is True
    behind = [at(0, 90, 0, 0, 0, 0, 0), at(1, 90, 16, 4, 0, 0, 0), at(4, 90, 64, 16, 0, 0, 0)]
    assert summarise(behind, max_drop=0.01)["real_time"] is False


def test_soak_camera_search_finds_the_largest_count_that_holds() -> None:
    from bench.soak import next_camera_count, searched_counts

    for capacity in (0, 1, 2, 5, 9, 13, 20, 64):
        for start in (1, 4, 11, 30):
            tried: dict[int, bool] = {}
            for n in searched_counts(tried, start, limit=64):
                assert n not in tried and 1 <= n <= 64
                tried[n] = n <= capacity  # a count holds real time up to the machine's capacity
            assert max((n for n, ok in tried.items() if ok), default=0) == capacity
            assert len(tried) <= (6 if abs(capacity - start) <= start // 3 else 16)  # a search, not a sweep
    assert next_camera_count({}, 100, limit=8) == 8


def test_soak_markdown_names_the_largest_count_and_the_load() -> None:
    from bench.soak import markdown

    row = {"clip": "random", "runtime": "openvino int8", "cameras": 12, "real_time": True, "encode_every": 16,
           "snippets_per_s": 22.5, "rss_slope_mb_per_min": 0.1, "worker_load": {"clip": 0.8, "preprocess": 0.05,
                                                                                "head": 0.02}}
    result = {"machine": {"cpu": "X", "isa": "AVX2, no AMX", "cores": 2, "load_average_1min": 0.5},
              "video": "v.mp4 (768x432, 30 fps)", "batch": 8, "seconds": 40.0, "max_drop": 0.01, "rows": [row],
              "largest_real_time": [{"clip": "random", "runtime": "openvino int8", "cameras": 12,
                                     "encoder_images_per_s": 38.0}]}
    text = markdown(result)
    assert "| random (encode_every 16) | openvino int8 | 38.0 | 12 | 22.5 | 0.1 | 80% / 5% / 2% |" in text
