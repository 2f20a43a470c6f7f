"""Drop-in integrations: Home Assistant discovery, alert snapshots, the Frigate-shaped copy, schema evolution.

The end-to-end test runs the device loop (tiny random bundle, two paced video files of different colours) against
a real mosquitto, subscribes like Home Assistant would, renders the discovery configs' templates with Jinja2 (the
template language HA uses) on the messages it gets, and checks the snapshots and the Frigate messages.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import jinja2
import jsonschema
import numpy as np
import pytest

from edge.capture import CaptureOptions, Frame, parse_source
from edge.config import RuntimeConfig
from edge.events import ModelInfo, build_event_payload, event_schema
from edge.frigate import FrigateSink, epoch
from edge.homeassistant import STATE_FILE, announce, camera_configs, discovery_id, read_published
from edge.mqtt import MqttConfig, MqttPublisher
from edge.outbox import Outbox
from edge.pipeline import MqttSink, Models, Pipeline, open_models
from edge.snapshots import SnapshotConfig, Snapshotter, encode_jpeg, enforce_retention
from edge.topics import Topics
from tests.mqtt_broker import MosquittoBroker
from tests.test_mqtt import FAST, Subscriber, retained
from tests.test_pipeline import tiny_bundle_path

VALIDATOR = jsonschema.Draft202012Validator(event_schema(), format_checker=jsonschema.FormatChecker())
CLASSES = ("Normal", "Abuse", "Fighting")
MODEL = ModelInfo("cplvad-student", "0.1.0", "fp16", "sha256:00")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _event(kind: str = "start", event_id: str | None = None, seq: int = 1, **extra: Any) -> dict[str, Any]:
    ended = kind == "end"
    return build_event_payload(
        event_id=event_id or str(uuid.uuid4()), seq=seq, kind=kind, camera="door", device="dev",  # type: ignore
        class_names=CLASSES, class_probs=np.array([0.2, 0.5, 0.3]), score=0.8, peak_score=0.9, start_time=T0,
        frame_start=0, frame_detected=31, end_time=T0.replace(second=4) if ended else None,
        frame_end=63 if ended else None, reason="normal" if ended else None, detected_time=T0.replace(second=2),
        model=MODEL, **extra)


# ------------------------------------------------------------------------------------------- schema evolution
def test_v1_consumers_accept_added_fields() -> None:
    """A newer v1 message (fields this schema does not know, at the top and in model) still validates."""
    message = _event()
    message["future_field"] = {"anything": [1, 2]}
    message["model"]["runtime"] = "tensorrt"
    VALIDATOR.validate(message)
    with pytest.raises(jsonschema.ValidationError):  # what v1 promises still holds
        VALIDATOR.validate({**_event(), "score": 1.5})


def test_every_field_we_send_is_declared_in_the_schema(tmp_path: Path) -> None:
    """Unknown fields are allowed for consumers; our own messages still document each field they carry."""
    declared = set(event_schema()["properties"])
    snap = Snapshotter(SnapshotConfig(dir=tmp_path), Topics("site/dev").snapshot)
    snap.note_frame(Frame("door", 31, 0, 0.0, np.zeros((48, 64, 3), np.uint8)))
    message = _event()
    snap.attach("door", message)
    assert "snapshot" in message
    VALIDATOR.validate(message)
    for kind in ("start", "update", "end"):
        assert set(_event(kind)) <= declared
    assert set(message) <= declared
    assert set(message["snapshot"]) <= set(event_schema()["properties"]["snapshot"]["properties"])
    assert "additionalProperties" not in event_schema()  # the rule that keeps v1 consumers working


# ------------------------------------------------------------------------------------------ home assistant
def test_discovery_ids_are_safe_and_distinct() -> None:
    assert discovery_id("front-door_2") == "front-door_2"
    ids = {discovery_id(n) for n in ("cam/b", "cam b", "cam+b", "cam_b", "", "%")}
    assert len(ids) == 6
    assert all(i and all(c.isalnum() or c in "_-" for c in i) for i in ids)


def test_discovery_configs_follow_the_documented_schema() -> None:
    topics = Topics("site/dev")
    configs = camera_configs("homeassistant", topics, "dev", "cam/b", CLASSES, "cplvad-student", "0.1.0",
                             snapshots=True)
    by_component = {topic.split("/")[1]: (topic, c) for topic, c in configs.items()}
    assert set(by_component) == {"binary_sensor", "sensor", "event", "image"}
    for component, (topic, config) in by_component.items():
        parts = topic.split("/")
        assert parts[0] == "homeassistant" and parts[-1] == "config" and len(parts) == 5
        assert all(c.isalnum() or c in "_-" for c in parts[2] + parts[3])  # node_id / object_id
        assert config["availability_topic"] == "site/dev/available"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["device"]["identifiers"] == ["cplvad_dev"] and config["device"]["name"]
        assert config["unique_id"].startswith("cplvad_dev_")
    assert len({c["unique_id"] for c in configs.values()}) == 4
    assert by_component["binary_sensor"][1]["state_topic"] == "site/dev/cam%2Fb/state"
    assert by_component["sensor"][1]["state_topic"] == "site/dev/cam%2Fb/state"
    assert by_component["event"][1]["state_topic"] == "site/dev/cam%2Fb/events"
    assert by_component["event"][1]["event_types"] == ["Abuse", "Fighting"]
    assert by_component["image"][1]["image_topic"] == "site/dev/cam%2Fb/snapshot"


def test_announce_removes_cameras_that_left(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    topics, state = Topics("p"), tmp_path / STATE_FILE

    def configs(*cameras: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for camera in cameras:
            out.update(camera_configs("ha", topics, "dev", camera, CLASSES, "m", "1", snapshots=False))
        return out

    assert announce(configs("a", "b"), state, lambda t, p: sent.append((t, p))) == []
    assert len(sent) == 6 and all(p for _, p in sent)
    sent.clear()
    gone = announce(configs("a"), state, lambda t, p: sent.append((t, p)))
    assert sorted(gone) == sorted(configs("b")) and {t for t, p in sent if not p} == set(configs("b"))
    sent.clear()
    announce(configs("a"), state, lambda t, p: sent.append((t, p)))  # removals are repeated at every start
    assert {t for t, p in sent if not p} == set(configs("b"))
    announce(configs("a", "b"), state, lambda t, p: None)  # b comes back: no longer removed
    assert read_published(state) == (set(configs("a", "b")), set())


# ------------------------------------------------------------------------------------------------ snapshots
def test_jpeg_is_bounded_and_decodes() -> None:
    image = np.full((720, 1280, 3), (0, 0, 200), np.uint8)
    data = encode_jpeg(image, max_side=320, quality=70, label="door  Fighting  0.91")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (180, 320, 3)
    assert decoded[150:, :, 2].mean() > 150 and decoded[150:, :, 0].mean() < 50  # still red below the label
    assert decoded[:5, :60].mean() < 40  # the dark label band
    assert image[:5, :60, 2].min() == 200  # the capture's array is never drawn on
    small = np.zeros((48, 64, 3), np.uint8)
    assert cv2.imdecode(np.frombuffer(encode_jpeg(small, 640, 80), np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)


def test_retention_deletes_oldest_first(tmp_path: Path) -> None:
    import os
    for i in range(6):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    assert [p.name for p in enforce_retention(tmp_path, keep_count=4, keep_bytes=10**6)] == ["0.jpg", "1.jpg"]
    assert [p.name for p in enforce_retention(tmp_path, keep_count=10, keep_bytes=250)] == ["2.jpg", "3.jpg"]
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["4.jpg", "5.jpg"]


def test_snapshot_uses_the_triggering_frame_and_the_peak(tmp_path: Path) -> None:
    published: dict[str, bytes] = {}
    snap = Snapshotter(SnapshotConfig(dir=tmp_path, draw_score=False, keep_count=2), Topics("p").snapshot,
                       lambda t, p: published.__setitem__(t, p))

    def frame(index: int, value: int) -> Frame:
        return Frame("door", index, 0, 0.0, np.full((48, 64, 3), value, np.uint8))

    for i in range(40):  # snippet 1 ends at frame 31 (value 31); snippet 2 is being read (values 32..39)
        snap.note_frame(frame(i, i))
    start = _event()  # frame_detected 31
    snap.attach("door", start)
    image = cv2.imdecode(np.frombuffer(published["p/door/snapshot"], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert abs(int(np.median(image)) - 31) <= 2
    assert start["snapshot"]["sha256"] == hashlib.sha256(published["p/door/snapshot"]).hexdigest()
    assert (tmp_path / start["snapshot"]["file"]).stat().st_mode & 0o777 == 0o600
    snap.note_scored("door", 1, 0.8, active=True)
    for i in range(40, 64):
        snap.note_frame(frame(i, 200 if i == 47 else i))
    snap.note_scored("door", 2, 0.95, active=True)  # snippet 2 (last frame 47) is the new peak
    snap.note_scored("door", 3, 0.85, active=True)
    update = _event("update", event_id=start["event_id"], seq=2)
    snap.attach("door", update)
    image = cv2.imdecode(np.frombuffer(published["p/door/snapshot"], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert abs(int(np.median(image)) - 200) <= 2 and update["snapshot"]["frame"] == 47
    again = _event("update", event_id=start["event_id"], seq=3)
    snap.attach("door", again)  # no new peak: no new image
    assert "snapshot" not in again
    assert len(list(tmp_path.glob("*.jpg"))) == 2


# -------------------------------------------------------------------------------------------------- frigate
def test_frigate_mapping() -> None:
    sent: list[tuple[str, dict]] = []
    sink = FrigateSink("frigate/events", lambda topic, payload: sent.append((topic, payload)))
    event_id = str(uuid.uuid4())
    start = _event(event_id=event_id)
    start["snapshot"] = {"topic": "p/door/snapshot", "file": "x.jpg", "sha256": "0" * 64}
    for message in (start, _event("update", event_id, 2), _event("end", event_id, 3)):
        sink.publish("door", message)
    assert [p["type"] for _, p in sent] == ["new", "update", "end"] and {t for t, _ in sent} == {"frigate/events"}
    new, update, end = (p for _, p in sent)
    assert new["before"] == new["after"] and update["before"] == new["after"] and end["before"] == update["after"]
    after = end["after"]
    assert (after["id"], after["camera"], after["label"], after["top_score"], after["score"]) == (
        event_id, "door", "Abuse", 0.9, 0.8)
    assert after["start_time"] == T0.timestamp() and after["end_time"] == T0.timestamp() + 4
    assert new["after"]["end_time"] is None and after["has_snapshot"] and not after["has_clip"]
    assert epoch("2024-05-01T12:00:03.250Z") == T0.timestamp() + 3.25
    assert sink._last == {}  # ended events are forgotten


# -------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def models(request: pytest.FixtureRequest) -> Models:
    from edge.bundle import load_bundle
    return open_models(load_bundle(tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))),
                       RuntimeConfig(threads=1))


def _colour_video(path: Path, bgr: tuple[int, int, int], frames: int = 64, fps: float = 16.0) -> Path:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
    for _ in range(frames):
        noise = rng.integers(0, 40, (64, 96, 3), dtype=np.uint8)
        writer.write(np.clip(np.array(bgr, np.int16) + noise, 0, 255).astype(np.uint8))
    writer.release()
    return path


def run_device(models: Models, broker: MosquittoBroker, work: Path, sub: Subscriber) -> dict[str, Any]:
    """Two cameras (red, blue) paced in real time for 4 s with discovery, snapshots and the Frigate copy on."""
    cameras = {"red": _colour_video(work / "red.mp4", (0, 0, 220)),
               "blue.cam": _colour_video(work / "blue.mp4", (220, 0, 0))}
    outbox = Outbox(work / "var" / "outbox.sqlite3")
    publisher = MqttPublisher(MqttConfig(host=broker.host, port=broker.port, prefix="site/dev", **FAST), outbox,
                              device="dev")
    snapshots = Snapshotter(SnapshotConfig(dir=work / "snapshots", max_side=64), publisher.topics.snapshot,
                            publisher.publish_retained)
    sinks = [MqttSink(publisher), FrigateSink("frigate/events", publisher.publish_durable)]
    pipeline = Pipeline(models, [parse_source(f"{n}={p}") for n, p in cameras.items()], device="dev",
                        capture=CaptureOptions(realtime=True, queue_size=64), runtime=RuntimeConfig(clip_batch=4),
                        sinks=sinks, publisher=publisher, state_interval_s=0.05, snapshots=snapshots)
    configs: dict[str, dict] = {}
    for camera in cameras:
        configs.update(camera_configs("homeassistant", publisher.topics, "dev", camera, models.classes,
                                      models.info.name, models.info.version, snapshots=True))
    announce(configs, work / "var" / STATE_FILE, publisher.publish_retained)
    publisher.start()
    try:
        assert pipeline.run(threading.Event(), exit_when_done=True, max_seconds=60) == "done"
    finally:
        publisher.close(timeout=5)
        outbox.close()
    assert sub.wait_for(lambda: any(m.topic == "frigate/events" and json.loads(m.payload)["type"] == "end"
                                    for m in sub.messages) and len(sub.events()) >= 4)
    return configs


def _render(template: str, payload: bytes) -> str:
    """A discovery template as HA renders it: Jinja2 with the payload parsed as ``value_json``."""
    env = jinja2.Environment()
    return env.from_string(template).render(value=payload.decode(), value_json=json.loads(payload)).strip()


@pytest.mark.slow
def test_home_assistant_sees_entities_change_through_an_anomaly(models: Models, mosquitto_bin: str,
                                                                tmp_path: Path) -> None:
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker:
        sub = Subscriber(broker, "#")
        configs = run_device(models, broker, tmp_path, sub)
        by_topic: dict[str, list[bytes]] = {}
        for m in sub.messages:
            by_topic.setdefault(m.topic, []).append(m.payload)
        assert json.loads(by_topic[next(iter(sorted(configs)))][0]) == configs[next(iter(sorted(configs)))]
        for camera, sanitised, channel in (("red", "red", 2), ("blue.cam", "blue.cam", 0)):
            mine = {t: c for t, c in configs.items() if f"/{discovery_id(camera)}_" in t}
            binary = next(c for t, c in mine.items() if t.startswith("homeassistant/binary_sensor/"))
            sensor = next(c for t, c in mine.items() if t.startswith("homeassistant/sensor/"))
            event = next(c for t, c in mine.items() if t.startswith("homeassistant/event/"))
            states = [_render(binary["value_template"], p) for p in by_topic[binary["state_topic"]]]
            compact = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
            assert compact[:3] == ["OFF", "ON", "OFF"], compact  # the anomaly starts and ends
            scores = [float(_render(sensor["value_template"], p)) for p in by_topic[sensor["state_topic"]]]
            assert max(scores) >= models.smoother.theta_on and all(0 <= s <= 1 for s in scores)
            fired = [_render(event["value_template"], p) for p in by_topic[event["state_topic"]]]
            starts = [json.loads(f) for f in fired if f]
            n_starts = sum(json.loads(p)["type"] == "start" for p in by_topic[event["state_topic"]])
            assert len(starts) == n_starts
            assert starts and all(s["event_type"] in event["event_types"] for s in starts)
            # the snapshot: retained, a JPEG of this camera's frames, referenced (sha256) from an event
            data = retained(broker, f"site/dev/{sanitised}/snapshot")
            assert data is not None
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert max(image.shape[:2]) <= 64
            assert np.argmax(image[20:].reshape(-1, 3).mean(axis=0)) == channel
            events = [json.loads(p) for p in by_topic[event["state_topic"]]]
            for message in events:
                VALIDATOR.validate(message)
            refs = [e["snapshot"] for e in events if "snapshot" in e]
            assert refs and refs[0] == events[0]["snapshot"]  # the start has one
            assert refs[-1]["sha256"] == hashlib.sha256(data).hexdigest()
            assert (tmp_path / "snapshots" / refs[-1]["file"]).read_bytes() == data
        frigate = [json.loads(p) for p in by_topic["frigate/events"]]
        assert {f["type"] for f in frigate} == {"new", "update", "end"} or {f["type"] for f in frigate} == {
            "new", "end"}
        assert all(f["after"]["camera"] in ("red", "blue.cam") for f in frigate)
        assert any(f["after"]["has_snapshot"] for f in frigate if f["type"] == "new")
        sub.close()
        # one camera leaves the config: its entities are removed (empty retained configs)
        outbox = Outbox(tmp_path / "var" / "outbox.sqlite3")
        publisher = MqttPublisher(MqttConfig(host=broker.host, port=broker.port, prefix="site/dev", **FAST),
                                  outbox, device="dev")
        kept = camera_configs("homeassistant", publisher.topics, "dev", "red", models.classes, models.info.name,
                              models.info.version, snapshots=True)
        gone = announce(kept, tmp_path / "var" / STATE_FILE, publisher.publish_retained)
        publisher.start()
        deadline = time.monotonic() + 10
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        publisher.close(timeout=5)
        outbox.close()
        assert len(gone) == 4 and all("blue" in t for t in gone)
        assert retained(broker, gone[0], timeout=1.0) is None
        assert retained(broker, sorted(kept)[0]) is not None


def test_snapshot_folder_defaults_beside_the_outbox(tmp_path: Path) -> None:
    from edge.config import EdgeConfig
    config = EdgeConfig.model_validate({"outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")}})
    assert config.resolved_snapshots().dir == tmp_path / "state" / "snapshots"
    config = EdgeConfig.model_validate({"snapshots": {"dir": str(tmp_path / "img"), "quality": 90}})
    assert (config.resolved_snapshots().dir, config.resolved_snapshots().quality) == (tmp_path / "img", 90)
    with pytest.raises(ValueError, match="snapshots.dir"):
        Snapshotter(config.snapshots.model_copy(update={"dir": None}), Topics("p").snapshot)
