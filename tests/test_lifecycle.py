"""Graceful lifecycle of the edge process beyond tests/test_run.py (which covers SIGTERM with the broker up and the
sd_notify protocol): Ctrl-C (SIGINT), SIGTERM while the broker is down, and the systemd unit that runs it.
"""
from __future__ import annotations

import configparser
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.outbox import Outbox
from tests.mqtt_broker import MosquittoBroker
from tests.test_faults import EdgeProcess, Recorder, check_delivery, delivered_all, wait_until, write_video

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "cplvad-edge.service"


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    from tests.test_pipeline import tiny_bundle_path

    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


def test_sigint_mid_event_ends_it_with_shutdown_and_goes_offline(tiny_bundle: Path, mosquitto_bin: str,
                                                                 tmp_path: Path, report_delivery: Callable) -> None:
    video = write_video(tmp_path / "cam.mp4", frames=100)
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker, Recorder(broker.port) as vms, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], "capture.realtime=true",
                        "capture.loop=true") as edge:
        wait_until(lambda: any(e["type"] == "update" for e in vms.events()), 40, "an open event", edge)
        assert edge.stop(signal.SIGINT) == 0, edge.log()[-3000:]
        produced = edge.events()
        wait_until(lambda: delivered_all(produced, vms)() and "offline" in vms.on("available"), 10,
                   "the closing event and offline")
    assert report_delivery(check_delivery(produced, vms.events()))["lost"] == 0
    assert produced[-1]["type"] == "end" and produced[-1]["reason"] == "shutdown"
    assert vms.on("available")[-1] == "offline"
    assert json.loads(vms.on("cam/status")[-1])["state"] == "offline"
    assert "SIGINT received" in edge.log() and "Traceback" not in edge.log()


def test_sigterm_while_the_broker_is_down_exits_promptly_and_keeps_the_closing_event(
        tiny_bundle: Path, mosquitto_bin: str, tmp_path: Path, report_delivery: Callable) -> None:
    video = write_video(tmp_path / "cam.mp4", frames=100)
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], "capture.realtime=true",
                        "capture.loop=true", "shutdown_timeout_s=1") as edge:
        wait_until(lambda: "MQTT: connected" in edge.log() and len(edge.events()) >= 2, 40, "events", edge)
        broker.stop()
        wait_until(lambda: "MQTT: disconnected" in edge.log(), 10, "the disconnect noticed", edge)
        started = time.monotonic()
        assert edge.stop(signal.SIGTERM) == 0, edge.log()[-3000:]
        took = time.monotonic() - started
    assert took < 10, f"shutdown took {took:.1f}s with shutdown_timeout_s=1"
    produced = edge.events()
    assert produced[-1]["type"] == "end" and produced[-1]["reason"] == "shutdown"
    with Outbox(edge.outbox) as outbox:
        stored = [json.loads(m.payload) for m in outbox.pending(limit=10_000)]
    report_delivery({"produced": len(produced), "acked_by_broker": len(produced) - len(stored),
                     "in_outbox": len(stored)})
    assert stored and stored[-1] == produced[-1]  # kept for the next start, which replays it
    assert "still in the outbox" in edge.log()


def test_sigkill_mid_event_then_restart_ends_the_event_with_restart(tiny_bundle: Path, mosquitto_bin: str,
                                                                     tmp_path: Path, report_delivery: Callable) -> None:
    """An event open when the process is SIGKILLed gets its ``end`` (reason ``restart``) from the next start, built
    from the event's last message stored in the outbox, before anything new of that camera."""
    video = write_video(tmp_path / "cam.mp4", frames=100)
    settings = ("capture.realtime=true", "capture.loop=true")
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker, Recorder(broker.port) as vms:
        with EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], *settings, name="edge1") as first:
            wait_until(lambda: any(e["type"] == "update" for e in vms.events()), 40, "an open event", first)
            first.stop(signal.SIGKILL)
        with Outbox(first.outbox) as outbox:
            left_open = outbox.open_events()
        assert set(left_open) == {"cam"} and left_open["cam"]["type"] in ("start", "update")
        killed = left_open["cam"]
        with EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], *settings, name="edge2") as second:
            wait_until(lambda: any(e["type"] == "end" and e["event_id"] == killed["event_id"] for e in vms.events()),
                       30, "the killed run's event ended", second)
            wait_until(lambda: any(e["type"] == "start" and e["seq"] > killed["seq"] for e in vms.events()), 30,
                       "a new event", second)
            assert second.stop() == 0, second.log()[-3000:]
        produced = second.events()  # both runs append to one JSON-lines file
        wait_until(delivered_all(produced, vms), 15, "every event delivered")
        counts = report_delivery(check_delivery(produced, vms.events()))
    assert counts["lost"] == 0
    ends = [e for e in vms.events() if e["event_id"] == killed["event_id"] and e["type"] == "end"]
    assert {e["seq"] for e in ends} == {killed["seq"] + 1}  # the next number of the camera: no gap, no reuse
    end = ends[0]
    assert end["reason"] == "restart" and end["frame_end"] == killed["frame_detected"]
    assert end["end_time"] == killed["detected_time"] and end["start_time"] == killed["start_time"]
    assert end["category"] == killed["category"] and end["camera"] == "cam"
    mine = [e for e in produced if e["camera"] == "cam"]
    assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
    new_start = next(e for e in mine if e["type"] == "start" and e["seq"] > killed["seq"])
    assert new_start["seq"] > end["seq"]  # the restart end comes before the new run's events
    assert "left open by the previous run" in second.log() and "Traceback" not in second.log()
    with Outbox(second.outbox) as outbox:
        assert outbox.open_events() == {}  # the second run ended its own event at shutdown


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNIT)
    return unit


def test_systemd_unit_restarts_on_failure_with_a_watchdog_and_no_secret() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] in ("main", "all")
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"  # bad config: stay down
    assert int(service["WatchdogSec"]) > 0 and int(service["TimeoutStopSec"]) > 5  # > default shutdown_timeout_s
    assert service["StateDirectoryMode"] == "0700" and service["NoNewPrivileges"] == "yes"
    assert service["User"] not in ("root", "0")
    exec_start = service["ExecStart"]
    assert "edge/run.py" in exec_start and "--config" in exec_start
    assert "password" not in exec_start.lower() and "mqtt.password" not in exec_start
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "systemctl enable --now cplvad-edge" in readme and "cplvad-edge.service" in readme
    assert "0600" in readme and "password_env" in readme  # where the secret goes instead
