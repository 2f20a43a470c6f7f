from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from edge.events import event_schema
from showcase.demo import busiest_interval, realtime_latency, score_events


def _stats(interval: float, fps: list[float], ms: float, calls: int) -> dict:
    return {"interval_s": interval, "cameras": {f"cam{i}": {"fps": f} for i, f in enumerate(fps)},
            "stages": {"clip": {"calls": calls, "ms_per_item": ms}, "head": {"calls": 0, "ms_per_item": 0.0}}}


def test_summary_reads_the_busiest_interval_not_the_closing_one() -> None:
    stats = [_stats(5.0, [2.0, 3.0], 40.0, 10), _stats(5.0, [4.0, 4.5], 35.5, 12), _stats(0.004, [0.0, 0.0], 0.0, 0)]
    assert busiest_interval(stats) == {"interval_s": 5.0, "cameras": 2, "fps_total": 8.5,
                                       "ms_per_item": {"clip": 35.5}}


def _start(camera: str, frame_start: int, frame_detected: int, category: str = "Arson", event_id: str = "e1",
           start_time: str = "2026-01-01T00:00:10.000Z") -> dict:
    return {"type": "start", "camera": camera, "frame_start": frame_start, "frame_detected": frame_detected,
            "category": category, "event_id": event_id, "start_time": start_time}


ROOT = Path(__file__).resolve().parents[1]
GT = {"arson_001": {"label": "Arson", "onset_frame": 64, "offset_frame": 160},
      "normal_000": {"label": "Normal", "onset_frame": None, "offset_frame": None}}


def test_events_are_scored_against_the_rendered_windows() -> None:
    events = [_start("arson_001", 300, 320, event_id="late"),  # after the window: a false alarm
              _start("arson_001", 80, 127, "Fighting", "second"), _start("arson_001", 60, 111, "Arson", "first"),
              _start("normal_000", 16, 47, event_id="fa")]
    s = score_events(events, GT)
    # a second start inside the same window is a duplicate alert: counted as a false alarm too
    assert (s["anomalies"], s["hits"], s["misses"], s["false_alarms"]) == (1, 1, 0, 3)
    assert s["category_accuracy"] == 1.0  # the first detected start (frame 111) says Arson
    assert s["latency_snippets_mean"] == (111 - 64) / 16
    assert score_events([], GT)["misses"] == 1


def test_realtime_latency_runs_from_the_onset_frame_to_the_arrival() -> None:
    # frame 48 shown at 00:00:10 (16 fps): the onset frame 64 at 00:00:11; the start arrived at 00:00:14.5
    event = _start("arson_001", 48, 111, start_time="2026-01-01T00:00:10.000Z")
    arrived = datetime(2026, 1, 1, 0, 0, 14, 500000, tzinfo=timezone.utc).timestamp()
    got = realtime_latency([event], {("e1", "start"): arrived}, {"arson_001": GT["arson_001"]})
    assert got == {"videos": 1, "alerts": 1, "latency_seconds_mean": 3.5, "latency_seconds_max": 3.5}
    assert realtime_latency([], {}, {"arson_001": GT["arson_001"]})["alerts"] == 0


@pytest.mark.slow
def test_fast_demo_detects_held_out_scenes_end_to_end(mosquitto_bin: str, tmp_path: Path) -> None:
    """`make demo FAST=1` for real: render, tiny-CLIP features, teacher, student, bundle, edge/run.py over a real
    mosquitto, then one anomaly per class paced in real time. The held-out anomalies are alerted with the right
    category, soon after their onset, and every event that starts also ends."""
    work = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "showcase.demo", "--fast", "--work", str(work)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["anomalies"] == 6 and summary["hits"] >= 4, summary
    assert summary["category_accuracy"] >= 0.75, summary
    assert summary["latency_snippets_max"] <= 8, summary  # snippets from the rendered onset to the alert
    assert summary["events_over_mqtt"] == summary["events_total"] > 0  # every event written also arrived
    assert summary["realtime"]["alerts"] >= 2 and summary["realtime"]["latency_seconds_max"] < 10, summary

    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    schema = event_schema()
    for event in events:
        jsonschema.validate(event, schema)
    by_id: dict[str, list[str]] = {}
    for event in events:
        by_id.setdefault(event["event_id"], []).append(event["type"])
    assert all(types[0] == "start" and types[-1] == "end" for types in by_id.values()), by_id
