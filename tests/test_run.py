"""edge/run.py end to end: a subprocess on a real video against a real mosquitto, shutdown by SIGTERM, sd_notify."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.outbox import Outbox
from edge.run import SystemdNotifier
from tests.mqtt_broker import MosquittoBroker
from tests.test_pipeline import tiny_bundle_path

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "test-dev"
PREFIX = f"cplvad/{DEVICE}"


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


class Subscriber:
    """A real MQTT client that records every message under the device prefix: (topic, payload, retain)."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{os.getpid()}-{time.time_ns()}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            payload = (hashlib.sha256(message.payload).hexdigest() if message.topic.endswith("/snapshot")  # JPEG
                       else message.payload.decode())
            self.messages.append((message.topic, payload, bool(message.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, str, bool]]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def on(self, suffix: str) -> list[str]:
        with self._cond:
            return [payload for topic, payload, _ in self.messages if topic == f"{PREFIX}/{suffix}"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _command(bundle: Path, broker: MosquittoBroker, tmp_path: Path, camera: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "edge" / "run.py"), "--bundle", str(bundle), "--camera", camera,
            "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--device-name", DEVICE,
            "--jsonl", str(tmp_path / "events.jsonl"), "--set", f"outbox.path={tmp_path / 'outbox.sqlite3'}",
            "--set", "stats.interval_s=0.5", "--set", "stats.state_interval_s=0.2", "--set", "runtime.threads=1",
            *extra]


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def test_file_camera_end_to_end(tiny_bundle: Path, scene_video: Path, mosquitto_bin: str, tmp_path: Path) -> None:
    video = scene_video
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker:
        sub = Subscriber(broker.port)
        try:
            done = subprocess.run(_command(tiny_bundle, broker, tmp_path, f"car={video}", "--exit-when-done",
                                           "--set", "homeassistant.discovery=true", "--set", "frigate.enabled=true",
                                           "--set", "snapshots.enabled=true"),
                                  cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
            assert "RANDOM CLIP weights" in done.stderr  # the loud warning of a random-CLIP bundle
            assert sub.wait_for(lambda m: (f"{PREFIX}/available", "offline", False) in m, 10)
        finally:
            sub.close()
        available = sub.on("available")
        assert available[0] == "online" and available[-1] == "offline"
        events = _events(tmp_path)
        assert [json.loads(p) for p in sub.on("car/events")] == events  # MQTT and JSONL carry the same events
        assert events[0]["type"] == "start" and events[-1]["type"] == "end"
        assert events[-1]["reason"] == "end_of_stream" and events[-1]["device"] == DEVICE
        snapshot = events[0]["snapshot"]  # the start's image: on MQTT (retained) and beside the outbox
        assert snapshot["sha256"] in sub.on("car/snapshot")
        image = (tmp_path / "snapshots" / snapshot["file"]).read_bytes()
        assert hashlib.sha256(image).hexdigest() == snapshot["sha256"]
        published = json.loads((tmp_path / "homeassistant-discovery.json").read_text())["published"]
        assert len(published) == 4 and all(t.startswith("homeassistant/") for t in published)
        # stats are QoS 0, latest wins: the final ones may not make it before the disconnect
        stats = [json.loads(p) for p in sub.on("stats")]
        assert stats and {"preprocess", "clip", "head", "smoother", "publish"} <= set(stats[-1]["stages"])
        counts = [(s["cameras"]["car"]["frames_encoded"], s["cameras"]["car"]["snippets"]) for s in stats]
        assert counts == sorted(counts) and counts[-1] <= (377 // 4 + 1, 377 // 16)  # encode_every 4: 0, 4, .. 376
        assert stats[-1]["model"]["clip_random"] is True and stats[-1]["device"] == DEVICE
        states = [json.loads(p) for p in sub.on("car/state")]
        assert states and 0.0 <= states[-1]["score"] <= 1.0
        assert json.loads(sub.on("car/status")[-1])["state"] in ("ended", "offline")

        # retained topics, as a VMS that connects later sees them; nothing left in the outbox
        late = Subscriber(broker.port)
        try:
            assert late.wait_for(lambda m: {t for t, _, r in m if r} >= {f"{PREFIX}/available", f"{PREFIX}/car/status",
                                                                        f"{PREFIX}/car/state"}, 5), late.messages
        finally:
            late.close()
        assert late.on("available") == ["offline"]
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        assert outbox.depth() == 0 and outbox.next_seq("car") == len(events) + 1


def test_sigterm_closes_events_flushes_and_goes_offline(tiny_bundle: Path, scene_video: Path, mosquitto_bin: str,
                                                        tmp_path: Path) -> None:
    video = scene_video
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # what systemd listens on
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    notes: list[bytes] = []
    reading = threading.Event()

    def read_notes() -> None:
        while not reading.is_set():
            try:
                notes.append(notify.recv(64))
            except TimeoutError:
                pass

    reader = threading.Thread(target=read_notes, daemon=True)
    reader.start()
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker:
        sub = Subscriber(broker.port)
        process = subprocess.Popen(_command(tiny_bundle, broker, tmp_path, f"car={video}", "--realtime", "--loop"),
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert sub.wait_for(lambda m: any(t.endswith("/car/events") for t, _, _ in m), 30), "no event"
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr[-3000:]
            assert sub.wait_for(lambda m: (f"{PREFIX}/available", "offline", False) in m, 10)
        finally:
            if process.poll() is None:
                process.kill()
            sub.close()
            reading.set()
            reader.join()
            notify.close()
    assert notes[0] == b"READY=1" and notes[-1] == b"STOPPING=1" and b"WATCHDOG=1" in notes
    events = [json.loads(p) for p in sub.on("car/events")]
    assert events == _events(tmp_path)
    assert events[0]["type"] == "start" and events[-1]["type"] == "end" and events[-1]["reason"] == "shutdown"
    assert "SIGTERM received" in stderr


def test_notifier_speaks_the_sd_notify_datagram_protocol(tmp_path: Path) -> None:
    name = f"cplvad-test-{os.getpid()}-{time.time_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)  # abstract namespace, written '@name' in NOTIFY_SOCKET
        server.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_interval_s == 1.0
        notifier.notify("READY=1")
        notifier.watchdog()
        notifier.watchdog()  # within the interval: no second ping
        notifier.notify("STOPPING=1")
        assert [server.recv(64) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]
    silent = SystemdNotifier({})
    assert silent.address is None and silent.watchdog_interval_s is None
    silent.notify("READY=1")  # outside systemd: nothing happens
    other = SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None  # the watchdog is meant for another process


def test_validate_config_prints_the_resolved_config_without_secrets(tiny_bundle: Path, tmp_path: Path) -> None:
    secret = "pw-that-must-not-show"
    result = subprocess.run(
        [sys.executable, str(ROOT / "edge" / "run.py"), "--validate-config", "--bundle", str(tiny_bundle),
         "--camera", "door=rtsp://admin:cam-secret@10.1.2.3/live", "--device-name", DEVICE,
         "--set", "mqtt.username=edge", "--set", "mqtt.password_env=EDGE_TEST_PW"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ, "EDGE_TEST_PW": secret})
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr
    assert secret not in printed and "cam-secret" not in printed
    config = yaml.safe_load(result.stdout)
    assert config["device"] == DEVICE and config["mqtt"]["prefix"] == PREFIX
    assert config["mqtt"]["password_env"] == "EDGE_TEST_PW" and config["cameras"] == [
        "door=rtsp://admin:***@10.1.2.3/live"]
    mismatch = subprocess.run(
        [sys.executable, str(ROOT / "edge" / "run.py"), "--validate-config", "--bundle", str(tiny_bundle),
         "--camera", "0", "--set", "runtime.encode_every=8"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert mismatch.returncode == 2 and "encode_every=4 but runtime.encode_every=8" in mismatch.stderr
