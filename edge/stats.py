"""Runtime statistics of the device loop: time per pipeline stage and per-camera counters, per interval.

The pipeline worker times each stage (``preprocess``, ``clip``, ``head``, ``smoother``, ``publish``) with
:class:`StageTimer`; every ``stats.interval_s`` it takes a snapshot, which :func:`stats_payload` turns into the
``<prefix>/stats`` message. Only the worker thread uses a timer (no locking).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

STAGES = ("preprocess", "clip", "head", "smoother", "publish")


@dataclass
class StageStats:
    """Calls of one stage in an interval; ``items`` = frames or snippets the calls handled."""

    calls: int = 0
    items: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, seconds: float, items: int = 1) -> None:
        self.calls += 1
        self.items += items
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)

    @property
    def ms_per_call(self) -> float:
        return 1000.0 * self.total_s / self.calls if self.calls else 0.0

    @property
    def ms_per_item(self) -> float:
        return 1000.0 * self.total_s / self.items if self.items else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"calls": self.calls, "items": self.items, "ms_per_call": round(self.ms_per_call, 3),
                "ms_per_item": round(self.ms_per_item, 3), "ms_max": round(1000.0 * self.max_s, 3)}


class StageTimer:
    """Wall time per stage since the last :meth:`snapshot`."""

    def __init__(self, stages: tuple[str, ...] = STAGES) -> None:
        self._stages = stages
        self._current = {s: StageStats() for s in stages}

    def add(self, stage: str, seconds: float, items: int = 1) -> None:
        if stage not in self._current:
            raise KeyError(f"unknown stage {stage!r}; expected one of {self._stages}")
        self._current[stage].add(seconds, items)

    @contextlib.contextmanager
    def time(self, stage: str, items: int = 1) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start, items)

    def totals(self) -> dict[str, float]:
        """Seconds per stage so far in this interval (a reading for another thread: no reset)."""
        return {stage: stats.total_s for stage, stats in self._current.items()}

    def snapshot(self) -> dict[str, StageStats]:
        """The interval's figures; the timer starts a new interval."""
        current, self._current = self._current, {s: StageStats() for s in self._stages}
        return current


@dataclass
class CameraCounters:
    """What the pipeline counts per camera (monotonic totals since start)."""

    frames: int = 0  # frames encoded
    snippets: int = 0  # snippet features that reached the head
    incomplete: int = 0  # snippets the stream skipped part of (dropped frames, reconnects)
    nonfinite: int = 0  # snippets whose feature or head output held NaN/Inf (skipped)
    held: int = 0  # smoother steps without a fresh output (the previous one repeated)
    events: int = 0  # event messages (start/update/end)
    segments: int = 0  # stream (re)starts seen
    extra: dict[str, Any] = field(default_factory=dict)


def rate(count_now: int, count_before: int, seconds: float) -> float:
    """Events per second between two readings of a monotonic counter (0 for an empty interval)."""
    return (count_now - count_before) / seconds if seconds > 0 else 0.0


def stats_payload(*, device: str, interval_s: float, stages: Mapping[str, StageStats],
                  cameras: Mapping[str, dict[str, Any]], outbox_depth: int | None,
                  outbox_dropped: int | None, model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``<prefix>/stats`` message (JSON-ready)."""
    return {
        "schema": "cplvad.stats/1",
        "device": device,
        "model": dict(model or {}),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "interval_s": round(interval_s, 3),
        "stages": {name: s.as_dict() for name, s in stages.items()},
        "cameras": dict(cameras),
        "outbox": {"depth": outbox_depth, "dropped": outbox_dropped},
    }
