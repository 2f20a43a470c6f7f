"""Event messages from the causal smoother's output: timing, back-dating, updates, end reasons, schema."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import (
    EVENT_SCHEMA,
    EventTracker,
    ModelInfo,
    StreamClock,
    build_event_payload,
    category_of,
    event_schema,
    iso_utc,
    restart_end,
)
from edge.outbox import Outbox
from edge.smoother import CausalSmoother, SmootherParams, SmootherUpdate
from edge.topics import Topics, sanitise_topic_part

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
CLASSES = ("Normal", "Abuse", "Fighting", "Shooting")
MODEL = ModelInfo(name="cplvad-student", version="0.1.0", precision="int8", bundle_hash="sha256:ab12")
VALIDATOR = jsonschema.Draft202012Validator(event_schema(), format_checker=jsonschema.FormatChecker())


def _tracker(update_every: int = 100, fps: float = 16.0) -> EventTracker:
    return EventTracker(
        "front door",
        "jetson-01",
        CLASSES,
        StreamClock(fps, T0),
        MODEL,
        next_seq=itertools.count(1).__next__,
        update_every=update_every,
    )


def _run(
    scores: list[float],
    probs: list[list[float]] | np.ndarray,
    tracker: EventTracker,
    params: SmootherParams,
    end_reason: str | None = None,
) -> list[dict]:
    """Feed per-snippet scores (one level) and class probabilities through the real smoother and tracker."""
    smoother = CausalSmoother(params)
    messages = []
    for score, p in zip(scores, probs):
        update = smoother.update([score], np.asarray(p))
        messages += tracker.step(update, smoother.event_class_probs())
    if end_reason is not None:
        final = smoother.close()
        if final is not None:
            messages += tracker.step(final, smoother.event_class_probs(), end_reason=end_reason)
    for message in messages:
        VALIDATOR.validate(message)
    return messages


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(event_schema())
    assert event_schema()["properties"]["schema"]["const"] == EVENT_SCHEMA


def test_clock_maps_snippets_to_frames_and_time() -> None:
    clock = StreamClock(25.0, T0)
    assert clock.frames(0) == (0, 15) and clock.frames(2) == (32, 47)
    assert clock.time_of_frame(50) == T0 + timedelta(seconds=2)
    with pytest.raises(ValueError, match="no timezone"):
        StreamClock(25.0, datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="positive frame rate"):
        StreamClock(0.0, T0)


def test_iso_utc() -> None:
    cest = timezone(timedelta(hours=2))
    assert iso_utc(datetime(2024, 5, 1, 14, 0, 3, 250_400, tzinfo=cest)) == "2024-05-01T12:00:03.250Z"


def test_category_ignores_normal() -> None:
    assert category_of(CLASSES, np.array([0.7, 0.05, 0.2, 0.05])) == "Fighting"


def test_event_start_back_dated_and_end_after_gap() -> None:
    # m=2: opens on the 2nd snippet over 0.5, back-dated to the 1st; g=2: closes on the 2nd miss
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=2, g=2, aggregation="mean")
    scores = [0.1, 0.8, 0.9, 0.7, 0.2, 0.1, 0.1]
    probs = [[0.1, 0.2, 0.6, 0.1]] * len(scores)
    start, end = _run(scores, probs, _tracker(), params)  # fps 16: one snippet per second
    assert start["type"] == "start" and end["type"] == "end" and end["reason"] == "normal"
    assert start["event_id"] == end["event_id"] and (start["seq"], end["seq"]) == (1, 2)
    assert start["frame_start"] == 16 and start["start_time"] == "2024-05-01T12:00:01.000Z"
    assert start["end_time"] is None and start["frame_end"] is None and "reason" not in start
    assert start["score"] == 0.9 and start["peak_score"] == 0.9
    assert end["frame_start"] == 16 and end["frame_end"] == 63  # last snippet over threshold: 3
    assert end["end_time"] == "2024-05-01T12:00:04.000Z"
    assert end["score"] == 0.1 and end["peak_score"] == 0.9
    assert end["category"] == "Fighting" and end["category_scores"] == dict(
        zip(CLASSES, [0.1, 0.2, 0.6, 0.1])
    )
    assert (
        start["camera"] == "front door"
        and start["device"] == "jetson-01"
        and start["model"]["precision"] == "int8"
    )


def test_peak_of_back_dated_snippets_counts() -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=3, g=1, aggregation="mean")
    start, _ = _run([0.1, 0.95, 0.6, 0.6, 0.1], [[0.25] * 4] * 5, _tracker(), params)
    assert start["frame_start"] == 16 and start["score"] == 0.6 and start["peak_score"] == 0.95


def test_periodic_updates_and_category_change() -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=1, g=1, aggregation="mean")
    scores = [0.9] * 10 + [0.1]
    fighting, shooting = [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]
    # equal scores, so the event's class probabilities are the plain mean: 3 x Fighting then Shooting, which
    # leads from snippet 6 on (4 vs 3). Messages: start (0), periodic update (4), category change (6),
    # end (10: the close step, where the periodic update that was due is replaced by the end).
    probs = [fighting] * 3 + [shooting] * 8
    messages = _run(scores, probs, _tracker(update_every=4), params)
    kinds = [(m["type"], m["category"]) for m in messages]
    assert kinds == [
        ("start", "Fighting"),
        ("update", "Fighting"),
        ("update", "Shooting"),
        ("end", "Shooting"),
    ]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4]
    assert len({m["event_id"] for m in messages}) == 1
    assert messages[2]["category_scores"]["Shooting"] == pytest.approx((0.1 * 3 + 0.7 * 4) / 7, abs=1e-4)


@pytest.mark.parametrize("reason", ["shutdown", "camera_lost"])
def test_end_on_shutdown_or_camera_lost(reason: str) -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=2, g=3, aggregation="mean")
    messages = _run(
        [0.1, 0.8, 0.8, 0.8, 0.3], [[0.1, 0.7, 0.1, 0.1]] * 5, _tracker(), params, end_reason=reason
    )
    assert [m["type"] for m in messages] == ["start", "end"]
    assert messages[-1]["reason"] == reason and messages[-1]["frame_end"] == 63


def test_two_events_get_two_ids_and_continuing_seq() -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=1, g=1, aggregation="mean")
    messages = _run([0.9, 0.1, 0.9, 0.1], [[0.1, 0.7, 0.1, 0.1]] * 4, _tracker(), params)
    assert [m["type"] for m in messages] == ["start", "end", "start", "end"]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4]
    assert (
        messages[0]["event_id"]
        == messages[1]["event_id"]
        != messages[2]["event_id"]
        == messages[3]["event_id"]
    )


def test_bad_inputs_are_named() -> None:
    tracker = _tracker()
    opening = SmootherUpdate(index=0, score=0.9, active=True, opened_at=0, closed_at=None)
    with pytest.raises(ValueError, match="without class probabilities"):
        tracker.step(opening, None)
    with pytest.raises(ValueError, match="must hold 4 finite values"):
        tracker.step(opening, np.array([0.5, 0.5]))
    tracker.step(SmootherUpdate(index=5, score=0.1, active=False, opened_at=None, closed_at=None), None)
    with pytest.raises(ValueError, match="snippet index 3 after 5"):
        tracker.step(SmootherUpdate(index=3, score=0.1, active=False, opened_at=None, closed_at=None), None)
    with pytest.raises(ValueError, match="normal .* and >= 1 anomaly class"):
        EventTracker("c", "d", ["Normal"], StreamClock(25.0, T0), MODEL, next_seq=lambda: 1)


def test_seq_continues_across_restart_through_the_outbox(tmp_path: Path) -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=1, g=1, aggregation="mean")
    seqs = []
    for _ in range(2):  # two runs of the device on the same outbox
        with Outbox(tmp_path / "o.db") as box:
            tracker = EventTracker(
                "cam", "dev", CLASSES, StreamClock(25.0, T0), MODEL, next_seq=partial(box.next_seq, "cam")
            )
            for message in _run([0.9, 0.1], [[0.1, 0.7, 0.1, 0.1]] * 2, tracker, params):
                box.put_event("cam", "t", json.dumps(message).encode(), seq=message["seq"], open_event=None)
                seqs.append(message["seq"])
    assert seqs == [1, 2, 3, 4]


def test_restart_end_closes_the_last_stored_message_where_it_last_saw_the_event() -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.5, m=1, g=3, aggregation="mean")
    tracker = EventTracker("cam", "dev", CLASSES, StreamClock(25.0, T0), MODEL, next_seq=itertools.count(1).__next__,
                           update_every=1)
    messages = _run([0.1, 0.9, 0.9, 0.9], [[0.1, 0.7, 0.1, 0.1]] * 4, tracker, params)
    last = messages[-1]
    assert last["type"] == "update" and last["frame_detected"] == 63
    assert last["detected_time"] == iso_utc(T0 + timedelta(seconds=64 / 25))
    end = restart_end(last, seq=9)
    VALIDATOR.validate(end)
    assert end["type"] == "end" and end["reason"] == "restart" and end["seq"] == 9
    assert end["event_id"] == last["event_id"] and end["start_time"] == last["start_time"]
    assert end["frame_end"] == 63 and end["end_time"] == last["detected_time"]
    assert {k: v for k, v in end.items() if k not in ("seq", "type", "end_time", "frame_end", "reason")} == \
        {k: v for k, v in last.items() if k not in ("seq", "type", "end_time", "frame_end")}
    with pytest.raises(ValueError, match="expected a 'start' or 'update'"):
        restart_end(end, seq=10)


names = st.text(min_size=0, max_size=12)


@settings(max_examples=40, deadline=None)
@given(
    class_names=st.lists(names, min_size=2, max_size=8, unique=True),
    data=st.data(),
    camera=names,
    device=st.text(min_size=1, max_size=12),
    score=st.floats(0, 1),
    peak=st.floats(0, 1),
    fps=st.floats(1, 120),
    first=st.integers(0, 10**6),
    length=st.integers(0, 10**4),
    kind=st.sampled_from(["start", "update", "end"]),
)
def test_any_payload_is_schema_valid_and_topic_safe(
    class_names, data, camera, device, score, peak, fps, first, length, kind
) -> None:
    raw = data.draw(st.lists(st.floats(0, 1), min_size=len(class_names), max_size=len(class_names)))
    probs = np.asarray(raw) / max(sum(raw), 1e-9)
    clock = StreamClock(fps, T0)
    frame_start = clock.frames(first)[0]
    frame_end = clock.frames(first + length)[1] if kind == "end" else None
    payload = build_event_payload(
        event_id="0b7c2f7e-1f4d-4c1e-9a57-2f1f3c9d5e11",
        seq=data.draw(st.integers(1, 2**53)),
        kind=kind,
        camera=camera,
        device=device,
        class_names=class_names,
        class_probs=probs,
        score=score,
        peak_score=peak,
        start_time=clock.time_of_frame(frame_start),
        frame_start=frame_start,
        frame_detected=clock.frames(first + length)[1],
        end_time=clock.time_of_frame(frame_end + 1) if frame_end is not None else None,
        frame_end=frame_end,
        reason="normal" if kind == "end" else None,
        model=MODEL,
    )
    VALIDATOR.validate(json.loads(json.dumps(payload, allow_nan=False)))
    assert payload["category"] in class_names[1:]
    topic = Topics("cplvad/dev").events(payload["camera"])
    levels = topic.split("/")
    assert len(levels) == 4 and levels[2] == sanitise_topic_part(camera) and not set("+#\0") & set(topic)
