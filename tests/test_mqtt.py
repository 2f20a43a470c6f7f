"""MQTT delivery against a real mosquitto: order, availability / last will, outages, restarts, auth, TLS.

Also the topic layout and escaping (edge.topics), which every MQTT message depends on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.configfile import ConfigError, load_config
from edge.events import ModelInfo, build_event_payload, event_schema
from edge.mqtt import MqttConfig, MqttPublisher, TlsConfig, read_password, should_fall_back
from edge.outbox import Outbox
from edge.topics import EMPTY_PART, Topics, check_prefix, restore_topic_part, sanitise_topic_part
from tests.mqtt_broker import MosquittoBroker, Mqtt311OnlyGate

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Normal", "Abuse", "Fighting")
MODEL = ModelInfo("cplvad-student", "0.1.0", "fp16", "sha256:00")
VALIDATOR = jsonschema.Draft202012Validator(event_schema())
FAST = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2, "keepalive_s": 5}


# ------------------------------------------------------------------------------------------------ topics
def test_topic_layout() -> None:
    topics = Topics("cplvad/dev-1")
    assert topics.available == "cplvad/dev-1/available" and topics.stats == "cplvad/dev-1/stats"
    assert topics.events("cam/1") == "cplvad/dev-1/cam%2F1/events"
    assert topics.status("front door") == "cplvad/dev-1/front door/status"
    assert topics.state("#") == "cplvad/dev-1/%23/state"


def test_sanitise_examples() -> None:
    assert sanitise_topic_part("entrance-2") == "entrance-2"
    assert sanitise_topic_part("a/b+c#d\0") == "a%2Fb%2Bc%23d%00"
    assert sanitise_topic_part("") == EMPTY_PART == "%"
    assert sanitise_topic_part("%") == "%25"
    assert sanitise_topic_part("a_b") != sanitise_topic_part("a/b")  # no collision with a look-alike
    assert sanitise_topic_part("\ud800") == "%uD800"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_sanitise_is_safe_deterministic_and_injective(a: str, b: str) -> None:
    part = sanitise_topic_part(a)
    assert part and not set("/+#\0") & set(part)
    part.encode("utf-8")  # no lone surrogates left
    assert sanitise_topic_part(a) == part
    assert restore_topic_part(part) == a
    assert (sanitise_topic_part(b) == part) == (a == b)


@pytest.mark.parametrize("prefix", ["", "$SYS/x", "a/+/b", "a#", "/a", "a/", "a//b"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="MQTT topic prefix"):
        check_prefix(prefix)


# ------------------------------------------------------------------------------------------- config bits
def test_config_rejects_unknown_key_and_bad_prefix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'keepalive_s'"):
        load_config(MqttConfig, None, ["keepalive=10"])
    with pytest.raises(ConfigError, match="prefix"):
        load_config(MqttConfig, None, ["prefix=a/#"])


def test_read_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_password(MqttConfig()) is None
    monkeypatch.setenv("CPLVAD_TEST_MQTT_PW", "s3cret")
    assert read_password(MqttConfig(password_env="CPLVAD_TEST_MQTT_PW")) == "s3cret"
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "pw").chmod(0o600)  # a password file others can read is refused (tests/test_security.py)
    assert read_password(MqttConfig(password_file=tmp_path / "pw")) == "from-file"
    with pytest.raises(ValueError, match="CPLVAD_TEST_MQTT_MISSING.*not set"):
        read_password(MqttConfig(password_env="CPLVAD_TEST_MQTT_MISSING"))
    with pytest.raises(ValueError, match="password_file=.*nope.*cannot read"):
        read_password(MqttConfig(password_file=tmp_path / "nope"))
    with pytest.raises(ValueError, match="both set"):
        read_password(MqttConfig(password_env="X", password_file=tmp_path / "pw"))


def test_fall_back_only_from_auto_mqtt5_on_unsupported_version() -> None:
    unsupported = ReasonCode(PacketTypes.CONNACK, "Unsupported protocol version")
    bad_login = ReasonCode(PacketTypes.CONNACK, "Bad user name or password")
    v5, v311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
    assert should_fall_back("auto", v5, unsupported)
    assert not should_fall_back("5", v5, unsupported)
    assert not should_fall_back("auto", v311, unsupported)
    assert not should_fall_back("auto", v5, bad_login)


# ----------------------------------------------------------------------------------------- broker helpers
def make_event(camera: str, seq: int) -> dict[str, Any]:
    t = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    return build_event_payload(
        event_id=str(uuid.uuid4()),
        seq=seq,
        kind="start",
        camera=camera,
        device="dev",
        class_names=CLASSES,
        class_probs=np.array([0.2, 0.5, 0.3]),
        score=0.9,
        peak_score=0.9,
        start_time=t,
        frame_start=16 * seq,
        frame_detected=16 * seq + 15,
        model=MODEL,
    )


class Subscriber:
    """A persistent-session MQTT 5 subscriber that records every message it gets."""

    def __init__(self, broker: MosquittoBroker, topic: str = "#", client_id: str = "test-sub") -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, m, r, p: self._subscribed.set()
        self.client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300  # the broker queues our QoS 1 messages while we are away
        self.client.connect(broker.host, broker.port, keepalive=5, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self._subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(m.payload) for m in self.messages if m.topic.endswith("/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def first_seen_in_order(events: list[dict[str, Any]], camera: str) -> list[int]:
    """Seq numbers of a camera in arrival order, QoS 1 duplicates removed."""
    seen: list[int] = []
    for event in events:
        if event["camera"] == camera and event["seq"] not in seen:
            seen.append(event["seq"])
    return seen


def retained(broker: MosquittoBroker, topic: str, timeout: float = 5.0) -> bytes | None:
    """The retained message of ``topic`` as a new subscriber sees it."""
    sub = Subscriber(broker, topic, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    try:
        sub.wait_for(lambda: bool(sub.messages), timeout)
        return sub.messages[0].payload if sub.messages else None
    finally:
        sub.close()


@pytest.fixture
def broker(mosquitto_bin: str, tmp_path: Path):
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", persistence=True) as running:
        yield running


def publisher(broker: MosquittoBroker, outbox: Outbox, **overrides: Any) -> MqttPublisher:
    password = overrides.pop("password", None)
    config = MqttConfig(host=broker.host, port=broker.port, prefix="site/dev", **{**FAST, **overrides})
    return MqttPublisher(config, outbox, device="dev", password=password)


# ------------------------------------------------------------------------------------------ in-process
def test_events_in_order_availability_and_retained_topics(broker: MosquittoBroker, tmp_path: Path) -> None:
    sub = Subscriber(broker)
    outbox = Outbox(tmp_path / "o.db")
    pub = publisher(broker, outbox, inflight=4)
    pub.start()
    assert sub.wait_for(lambda: bool(sub.on("site/dev/available")))
    assert sub.on("site/dev/available")[0].payload == b"online"
    for seq in range(1, 16):
        for camera in ("cam-a", "cam/b"):
            pub.publish_event(camera, make_event(camera, seq))
    pub.publish_status("cam/b", {"status": "streaming"})
    pub.publish_state("cam/b", {"score": 0.12})
    pub.publish_stats({"fps": 25.0, "outbox_depth": outbox.depth()})
    assert pub.flush(10) and outbox.depth() == 0
    assert sub.wait_for(lambda: len(sub.events()) >= 30 and bool(sub.on("site/dev/stats")))
    for event in sub.events():
        VALIDATOR.validate(event)
    assert first_seen_in_order(sub.events(), "cam-a") == list(range(1, 16))
    assert first_seen_in_order(sub.events(), "cam/b") == list(range(1, 16))
    assert {m.topic for m in sub.messages if m.topic.endswith("/events")} == {
        "site/dev/cam-a/events",
        "site/dev/cam%2Fb/events",
    }
    event_message = sub.on("site/dev/cam-a/events")[0]
    assert event_message.properties.ContentType == "application/json"
    assert json.loads(sub.on("site/dev/stats")[0].payload)["fps"] == 25.0
    pub.close()
    outbox.close()
    sub.close()
    assert retained(broker, "site/dev/available") == b"offline"
    assert json.loads(retained(broker, "site/dev/cam%2Fb/status") or b"{}") == {"status": "streaming"}
    assert json.loads(retained(broker, "site/dev/cam%2Fb/state") or b"{}") == {"score": 0.12}


def test_broker_outage_loses_nothing_and_keeps_order(broker: MosquittoBroker, tmp_path: Path) -> None:
    sub = Subscriber(broker)
    outbox = Outbox(tmp_path / "o.db")
    pub = publisher(broker, outbox, inflight=5)
    pub.start()
    sent = []
    for seq in range(1, 41):
        for camera in ("cam-a", "cam-b"):
            event = make_event(camera, seq)
            pub.publish_event(camera, event)
            sent.append(event["event_id"])
        if seq == 10:
            broker.stop()  # mid-stream: some events are in flight, the rest pile up in the outbox
        if seq == 30:
            assert outbox.depth() > 0 and not pub.connected
            broker.start()
    assert pub.flush(15), f"{outbox.depth()} events still in the outbox"
    assert sub.wait_for(lambda: {e["event_id"] for e in sub.events()} >= set(sent), 15)
    assert first_seen_in_order(sub.events(), "cam-a") == list(range(1, 41))
    assert first_seen_in_order(sub.events(), "cam-b") == list(range(1, 41))
    pub.close()
    outbox.close()
    sub.close()


def test_forced_mqtt_311(broker: MosquittoBroker, tmp_path: Path) -> None:
    sub = Subscriber(broker)
    with Outbox(tmp_path / "o.db") as outbox:
        pub = publisher(broker, outbox, protocol="3.1.1")
        assert pub.protocol_name == "MQTT 3.1.1"
        pub.start()
        for seq in range(1, 6):
            pub.publish_event("cam", make_event("cam", seq))
        assert pub.flush(10)
        assert sub.wait_for(lambda: len(sub.events()) == 5)
        assert first_seen_in_order(sub.events(), "cam") == [1, 2, 3, 4, 5]
        assert not hasattr(sub.on("site/dev/cam/events")[0].properties, "ContentType")
        pub.close()
    sub.close()


def test_falls_back_to_311_when_the_broker_refuses_mqtt5(
    broker: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sub = Subscriber(broker)
    with Mqtt311OnlyGate(broker.port) as gate, Outbox(tmp_path / "o.db") as outbox:
        config = MqttConfig(host=gate.host, port=gate.port, prefix="site/dev", **FAST)
        pub = MqttPublisher(config, outbox, device="dev")
        for seq in range(1, 4):  # stored before the first connect: replayed over MQTT 3.1.1
            pub.publish_event("cam", make_event("cam", seq))
        with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
            pub.start()
            assert pub.flush(10)
        assert gate.refused == 1 and pub.protocol_name == "MQTT 3.1.1"
        assert "does not speak MQTT 5" in caplog.text and "falling back to MQTT 3.1.1" in caplog.text
        pub.publish_event("cam", make_event("cam", 4))
        assert pub.flush(10)
        pub.close()
    assert sub.wait_for(lambda: len(sub.events()) == 4)
    assert first_seen_in_order(sub.events(), "cam") == [1, 2, 3, 4]
    sub.close()


@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_refused_login_is_logged_without_password_and_events_wait(
    mosquitto_bin: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", users={"edge": "right-pw"}) as broker:
        with Outbox(tmp_path / "o.db") as outbox:
            with caplog.at_level(logging.DEBUG, logger="edge.mqtt"):
                pub = publisher(broker, outbox, username="edge", password="wrong-pw-123", protocol=protocol)
                pub.start()
                pub.publish_event("cam", make_event("cam", 1))
                deadline = time.monotonic() + 5
                while caplog.text.count("refused the connection") < 3 and time.monotonic() < deadline:
                    time.sleep(0.05)  # a few retries with backoff
                pub.close(timeout=0.5)
            refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
            assert len(refusals) >= 3 and [r.levelname for r in refusals][:2] == ["ERROR", "DEBUG"]
            assert "Not authorized" in caplog.text or "Bad user name or password" in caplog.text
            assert "check mqtt.username" in caplog.text and "wrong-pw-123" not in caplog.text
            assert outbox.depth() == 1  # kept for later
            pub = publisher(broker, outbox, username="edge", password="right-pw", protocol=protocol)
            pub.start()
            assert pub.flush(10) and outbox.depth() == 0
            pub.close()


def test_event_refused_by_broker_acl_stays_in_the_outbox(
    mosquitto_bin: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acl = "topic readwrite site/dev/available\n"  # events are not allowed: MQTT 5 PUBACK "Not authorized"
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", acl=acl) as broker:
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.ERROR, logger="edge.mqtt"):
            pub = publisher(broker, outbox)
            pub.start()
            pub.publish_event("cam", make_event("cam", 1))
            assert not pub.flush(1.0) and outbox.depth() == 1
            pub.close(timeout=0)
    assert "refused outbox message 1 (Not authorized)" in caplog.text


def _make_certs(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (EC keys: fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / f"{name}-{p}" for p in ("ca.key", "ca.pem", "server.key", "csr", "server.pem")
    )
    ext = folder / f"{name}-ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", f"/CN={name}-ca")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


def test_tls_delivers_with_the_right_ca_and_reports_a_wrong_one(
    mosquitto_bin: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl not installed")
    ca, cert, key = _make_certs(tmp_path / "pki", "good")
    other_ca, _, _ = _make_certs(tmp_path / "pki", "other")
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker", tls=(ca, cert, key)) as broker:
        with Outbox(tmp_path / "wrong.db") as outbox, caplog.at_level(logging.ERROR, logger="edge.mqtt"):
            pub = publisher(broker, outbox, tls=TlsConfig(ca_certs=other_ca))
            pub.start()
            pub.publish_event("cam", make_event("cam", 1))
            assert not pub.flush(1.0) and outbox.depth() == 1
            pub.close(timeout=0)
        assert "TLS certificate check failed" in caplog.text
        with Outbox(tmp_path / "right.db") as outbox:
            pub = publisher(broker, outbox, tls=TlsConfig(ca_certs=ca))
            pub.start()
            pub.publish_event("cam", make_event("cam", 1))
            assert pub.flush(10)
            pub.close()


def test_missing_tls_file_is_a_config_error(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox, pytest.raises(ValueError, match="mqtt.tls: cannot load"):
        MqttPublisher(MqttConfig(tls=TlsConfig(ca_certs=tmp_path / "missing.pem")), outbox, device="dev")


# -------------------------------------------------------------------------------- publisher processes
CHILD = """
import json, sys, uuid
from datetime import datetime, timezone
import numpy as np
from edge.events import ModelInfo, build_event_payload
from edge.mqtt import MqttConfig, MqttPublisher
from edge.outbox import Outbox

config = MqttConfig.model_validate_json(sys.argv[1])
box = Outbox(sys.argv[2])
pub = MqttPublisher(config, box, device="dev")
pub.start()
print("started", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "publish":
        camera, count = args[0], int(args[1])
        ids = []
        for _ in range(count):
            seq = box.next_seq(camera)
            event = build_event_payload(
                event_id=str(uuid.uuid4()), seq=seq, kind="start", camera=camera, device="dev",
                class_names=["Normal", "Abuse"], class_probs=np.array([0.3, 0.7]), score=0.8, peak_score=0.8,
                start_time=datetime.now(timezone.utc), frame_start=0, frame_detected=15,
                model=ModelInfo("cplvad-student", "0.1.0", "fp32", "sha256:00"))
            pub.publish_event(camera, event)
            ids.append(event["event_id"])
        print(" ".join(ids), flush=True)
    elif command == "flush":
        print(pub.flush(float(args[0])), box.depth(), flush=True)
"""


class PublisherProcess:
    """edge.mqtt.MqttPublisher in a child process, driven line by line over stdin."""

    def __init__(self, broker: MosquittoBroker, outbox_path: Path) -> None:
        config = MqttConfig(host=broker.host, port=broker.port, prefix="site/dev", **FAST)
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, config.model_dump_json(), str(outbox_path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.ask(None) == "started"

    def ask(self, command: str | None) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline().strip()
        assert line, f"publisher process exited with {self.process.poll()}"
        return line

    def publish(self, camera: str, count: int) -> list[str]:
        return self.ask(f"publish {camera} {count}").split()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def test_last_will_when_the_publisher_is_killed(broker: MosquittoBroker, tmp_path: Path) -> None:
    sub = Subscriber(broker, "site/dev/available")
    child = PublisherProcess(broker, tmp_path / "o.db")
    try:
        assert sub.wait_for(lambda: [m.payload for m in sub.messages] == [b"online"])
        child.kill()
        assert sub.wait_for(lambda: [m.payload for m in sub.messages] == [b"online", b"offline"])
    finally:
        child.kill()
        sub.close()
    assert retained(broker, "site/dev/available") == b"offline"


def test_publisher_killed_while_broker_down_replays_its_outbox(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    sub = Subscriber(broker)
    outbox = tmp_path / "o.db"
    first = PublisherProcess(broker, outbox)
    try:
        sent = first.publish("cam", 5)
        assert first.ask("flush 10") == "True 0"
        broker.stop()
        sent += first.publish("cam", 7)  # stored, not deliverable
    finally:
        first.kill()
    broker.start()
    second = PublisherProcess(broker, outbox)
    try:
        sent += second.publish("cam", 3)  # seq continues from the outbox: 13..15
        assert second.ask("flush 15") == "True 0"
    finally:
        second.kill()
    assert sub.wait_for(lambda: {e["event_id"] for e in sub.events()} >= set(sent), 15)
    assert first_seen_in_order(sub.events(), "cam") == list(range(1, 16))
    sub.close()


def test_events_leave_the_outbox_only_on_puback(broker: MosquittoBroker, tmp_path: Path) -> None:
    outbox = tmp_path / "o.db"
    child = PublisherProcess(broker, outbox)
    try:
        child.publish("cam", 2)
        assert child.ask("flush 10") == "True 0"
        broker.pause()  # connected, but no PUBACK will come
        child.publish("cam", 3)
        assert child.ask("flush 0.5") == "False 3"  # handed to the network, not acknowledged
    finally:
        child.kill()
        broker.resume()
    with Outbox(outbox) as box:
        assert [json.loads(m.payload)["seq"] for m in box.pending()] == [3, 4, 5]


def test_close_delivers_the_final_status_and_stats(broker: MosquittoBroker, tmp_path: Path) -> None:
    """What a shutdown publishes just before close() (each camera's last status, the final stats) reaches the
    broker before the publisher disconnects."""
    sub = Subscriber(broker)
    cameras = [f"cam-{i}" for i in range(20)]
    with Outbox(tmp_path / "o.db") as outbox:
        pub = publisher(broker, outbox)
        pub.start()
        assert sub.wait_for(lambda: bool(sub.on("site/dev/available")))
        for camera in cameras:
            pub.publish_status(camera, {"camera": camera, "state": "online"})
        for camera in cameras:  # as Pipeline._finish does: every camera stops, then the final stats
            pub.publish_status(camera, {"camera": camera, "state": "offline", "reason": "stopped"})
            pub.publish_state(camera, {"camera": camera, "score": 0.5})
        pub.publish_stats({"final": True})
        pub.close()
    assert sub.wait_for(lambda: bool(sub.on("site/dev/stats")))
    assert json.loads(sub.on("site/dev/stats")[-1].payload) == {"final": True}
    # published after the stats; the subscriber may get it a moment later
    assert sub.wait_for(lambda: [m.payload for m in sub.on("site/dev/available")][-1:] == [b"offline"])
    sub.close()
    for camera in (cameras[0], cameras[-1]):
        assert json.loads(retained(broker, f"site/dev/{camera}/status") or b"{}")["state"] == "offline"
        state = json.loads(retained(broker, f"site/dev/{camera}/state") or b"{}")
        assert state == {"camera": camera, "score": 0.5}
