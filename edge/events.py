"""Anomaly events of one camera: the causal smoother's per-snippet output -> start / update / end messages.

``EventTracker.step`` takes each :class:`edge.smoother.SmootherUpdate` with the smoother's score-weighted
mean class probabilities of the event (``CausalSmoother.event_class_probs()``, computed there, in one place)
and returns the messages to publish (JSON-ready dicts, see ``edge/schemas/event.schema.json``):

- ``start`` on the step an event opens, back-dated to its first snippet (``opened_at``);
- ``update`` while it is open, every ``update_every`` snippets and at once when its category changes;
- ``end`` on the step it closes, with ``reason`` ``normal`` (the smoother closed it), or ``shutdown`` /
  ``camera_lost`` / ``end_of_stream`` when the runtime closed the smoother (``step(smoother.close(), ...,
  end_reason=...)``); ``restart`` is the end that the next start of the device gives an event a killed
  process left open (:func:`restart_end`, from the event's last stored message).

Snippet indices become frames and times through :class:`StreamClock` (16 frames per snippet): the wall clock
for live cameras, the position in the file (anchored at the stream's start) for files.

Subscribers deduplicate on (event_id, seq): a message can arrive twice (QoS 1 redelivery, replay after a
restart), always with the same content.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from edge.configfile import StrictModel
from edge.smoother import SmootherUpdate
from edge.snippets import FRAMES_PER_SNIPPET

log = logging.getLogger(__name__)

EVENT_SCHEMA = "cplvad.event/1"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "event.schema.json"
EndReason = Literal["normal", "shutdown", "camera_lost", "end_of_stream", "restart"]
EventType = Literal["start", "update", "end"]


class EventsConfig(StrictModel):
    """How often an open event is re-announced."""

    update_every: int = Field(16, ge=1, description="snippets between 'update' messages of an open event")


@cache
def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an event message."""
    return json.loads(SCHEMA_PATH.read_text())


@dataclass(frozen=True)
class ModelInfo:
    """The model that produced an event (from the bundle manifest)."""

    name: str
    version: str
    precision: Literal["fp32", "fp16", "int8"]
    bundle_hash: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "precision": self.precision,
            "bundle_hash": self.bundle_hash,
        }


@dataclass(frozen=True)
class StreamClock:
    """Snippet index -> frames and wall-clock time of one stream (frame 0 shown at ``start_time``)."""

    fps: float
    start_time: datetime  # timezone-aware
    frames_per_snippet: int = FRAMES_PER_SNIPPET

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"StreamClock.fps={self.fps!r}; expected a positive frame rate")
        if self.start_time.tzinfo is None:
            raise ValueError(
                f"StreamClock.start_time={self.start_time!r} has no timezone; pass an aware datetime "
                "(e.g. datetime.now(timezone.utc))"
            )

    def frames(self, index: int) -> tuple[int, int]:
        """First and last frame (inclusive) of snippet ``index``."""
        first = index * self.frames_per_snippet
        return first, first + self.frames_per_snippet - 1

    def time_of_frame(self, frame: int) -> datetime:
        """When frame ``frame`` begins (``frame + 1`` gives the end of ``frame``)."""
        return self.start_time + timedelta(seconds=frame / self.fps)


def iso_utc(t: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: ``2024-05-01T12:00:03.250Z``."""
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def category_of(class_names: Sequence[str], class_probs: np.ndarray) -> str:
    """The event's category: argmax of the class probabilities over the classes other than normal (class 0).

    An event is an anomaly by construction (the binary branch opened it), so class 0 is reported in
    ``category_scores`` but never named as its category.
    """
    return class_names[1 + int(np.argmax(class_probs[1:]))]


def build_event_payload(
    *,
    event_id: str,
    seq: int,
    kind: EventType,
    camera: str,
    device: str,
    class_names: Sequence[str],
    class_probs: np.ndarray,
    score: float,
    peak_score: float,
    start_time: datetime,
    frame_start: int,
    frame_detected: int,
    end_time: datetime | None = None,
    frame_end: int | None = None,
    reason: EndReason | None = None,
    detected_time: datetime | None = None,
    model: ModelInfo,
) -> dict[str, Any]:
    """One event message (schema ``cplvad.event/1``); scores are rounded to 4 decimals.

    detected_time: when frame ``frame_detected`` ends in the stream (the field is left out when None).
    """
    payload: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "event_id": event_id,
        "seq": seq,
        "type": kind,
        "camera": camera,
        "device": device,
        "category": category_of(class_names, class_probs),
        "category_scores": {name: round(float(p), 4) for name, p in zip(class_names, class_probs)},
        "score": round(float(score), 4),
        "peak_score": round(float(peak_score), 4),
        "start_time": iso_utc(start_time),
        "end_time": iso_utc(end_time) if end_time is not None else None,
        "frame_start": frame_start,
        "frame_end": frame_end,
        "frame_detected": frame_detected,
        "model": model.as_dict(),
    }
    if detected_time is not None:
        payload["detected_time"] = iso_utc(detected_time)
    if kind == "end":
        payload["reason"] = reason
    return payload


def restart_end(last: dict[str, Any], seq: int) -> dict[str, Any]:
    """The ``end`` (reason ``restart``) of an event that a killed process left open, from its last stored
    ``start`` / ``update`` message: it ends where that message last saw it (``frame_detected``, at
    ``detected_time``; ``start_time`` for messages without it), with that message's scores."""
    if last.get("type") not in ("start", "update"):
        raise ValueError(f"restart_end: expected a 'start' or 'update' message, got type {last.get('type')!r}")
    return {
        **last,
        "seq": seq,
        "type": "end",
        "end_time": last.get("detected_time") or last["start_time"],
        "frame_end": max(int(last["frame_detected"]), int(last["frame_start"])),
        "reason": "restart",
    }


@dataclass
class _OpenEvent:
    event_id: str
    first: int  # back-dated first snippet
    peak: float
    class_probs: np.ndarray
    category: str
    last_message: int  # snippet index of the last start/update


class EventTracker:
    """Turns one camera's smoother updates into event messages.

    next_seq: returns the camera's next message number; pass ``functools.partial(outbox.next_seq, camera)``
        so that seq keeps increasing across restarts.
    history: how many recent snippet scores are kept to find the peak of a back-dated event.
    """

    def __init__(
        self,
        camera: str,
        device: str,
        class_names: Sequence[str],
        clock: StreamClock,
        model: ModelInfo,
        next_seq: Callable[[], int],
        update_every: int = 16,
        history: int = 4096,
    ) -> None:
        if len(class_names) < 2:
            raise ValueError(
                f"class_names={list(class_names)!r}: expected normal (class 0) and >= 1 anomaly class"
            )
        if update_every < 1:
            raise ValueError(f"update_every={update_every!r}: expected >= 1 snippet")
        self.camera = camera
        self.device = device
        self.class_names = tuple(class_names)
        self.clock = clock
        self.model = model
        self.update_every = update_every
        self._next_seq = next_seq
        self._scores: deque[tuple[int, float]] = deque(maxlen=history)
        self._event: _OpenEvent | None = None
        self._last_index = -1

    @property
    def active(self) -> bool:
        return self._event is not None

    def step(
        self, update: SmootherUpdate, class_probs: np.ndarray | None, end_reason: EndReason = "normal"
    ) -> list[dict[str, Any]]:
        """Messages caused by one smoother update (usually none).

        class_probs: the event's mean class probabilities [M] (``smoother.event_class_probs()``); needed while
            an event is open; on the closing step None keeps the last ones.
        end_reason: the reason given if this update closes the event (``normal`` for ``smoother.update``,
            ``shutdown`` / ``camera_lost`` for the update of ``smoother.close()``).
        """
        if update.index < self._last_index:
            raise ValueError(
                f"camera {self.camera!r}: snippet index {update.index} after {self._last_index}; "
                "expected non-decreasing indices (one tracker per stream)"
            )
        if update.index > self._last_index:
            self._scores.append((update.index, update.score))
        self._last_index = update.index
        probs = self._check_probs(class_probs)
        messages = []
        if update.opened_at is not None:
            if self._event is not None:
                log.warning(
                    "camera %r: event opened at snippet %d while one is open; ending the old one",
                    self.camera,
                    update.index,
                )
                messages.append(
                    self._end(max(update.opened_at - 1, self._event.first), update, "normal")
                )
            messages.append(self._start(update, probs))
        elif self._event is not None:
            event = self._event
            event.peak = max(event.peak, update.score)
            if probs is not None:
                event.class_probs = probs
            category = category_of(self.class_names, event.class_probs)
            due = update.index - event.last_message >= self.update_every
            if update.closed_at is None and (due or category != event.category):
                event.category = category
                event.last_message = update.index
                messages.append(self._message("update", update))
        if update.closed_at is not None:
            if self._event is None:
                log.debug(
                    "camera %r: close at snippet %d without an open event (ignored)",
                    self.camera,
                    update.index,
                )
            else:
                messages.append(self._end(update.closed_at, update, end_reason))
        return messages

    def _check_probs(self, class_probs: np.ndarray | None) -> np.ndarray | None:
        if class_probs is None:
            return None
        probs = np.asarray(class_probs, dtype=np.float64).reshape(-1)
        if probs.size != len(self.class_names) or not np.all(np.isfinite(probs)):
            raise ValueError(
                f"camera {self.camera!r}: class_probs {probs.tolist()} must hold "
                f"{len(self.class_names)} finite values, one per class {list(self.class_names)}"
            )
        return np.clip(probs, 0.0, 1.0)

    def _start(self, update: SmootherUpdate, probs: np.ndarray | None) -> dict[str, Any]:
        if probs is None:
            raise ValueError(
                f"camera {self.camera!r}: an event opened at snippet {update.index} without class "
                "probabilities; pass smoother.event_class_probs() (feed class_probs to the smoother)"
            )
        first = int(update.opened_at)  # type: ignore[arg-type]
        peak = max((s for i, s in self._scores if i >= first), default=update.score)
        self._event = _OpenEvent(
            str(uuid.uuid4()), first, peak, probs, category_of(self.class_names, probs), update.index
        )
        return self._message("start", update)

    def _end(self, last: int, update: SmootherUpdate, reason: EndReason) -> dict[str, Any]:
        message = self._message("end", update, last=last, reason=reason)
        self._event = None
        return message

    def _message(
        self, kind: EventType, update: SmootherUpdate, last: int | None = None, reason: EndReason | None = None
    ) -> dict[str, Any]:
        score = update.score
        event = self._event
        assert event is not None
        frame_start = self.clock.frames(event.first)[0]
        frame_end = self.clock.frames(last)[1] if last is not None else None
        frame_detected = self.clock.frames(update.index)[1]
        return build_event_payload(
            event_id=event.event_id,
            seq=self._next_seq(),
            kind=kind,
            camera=self.camera,
            device=self.device,
            class_names=self.class_names,
            class_probs=event.class_probs,
            score=min(max(score, 0.0), 1.0),
            peak_score=min(max(event.peak, 0.0), 1.0),
            start_time=self.clock.time_of_frame(frame_start),
            frame_start=frame_start,
            frame_detected=frame_detected,
            end_time=self.clock.time_of_frame(frame_end + 1) if frame_end is not None else None,
            frame_end=frame_end,
            reason=reason,
            detected_time=self.clock.time_of_frame(frame_detected + 1),
            model=self.model,
        )
