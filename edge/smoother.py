"""Causal CAR-style smoother: one snippet at a time, per camera stream, no look-ahead.

Each step takes the newest snippet's per-level binary probabilities [L] (and optionally its class
probabilities [M]), aggregates the levels with CAR's own function (``edge.car.aggregate``, which needs no
future), and runs a hysteresis state machine, the causal form of CAR's "merge gaps <= grouping, then drop
runs <= filter":

- A candidate starts at a snippet with score >= theta_on. It lives on while fewer than ``g`` consecutive
  snippets fall below the threshold (theta_on while a candidate, theta_off once open); ``g`` misses end it.
- The candidate opens as an event once it spans ``m`` snippets (its first to its newest snippet over the
  threshold). With no dip that is "m consecutive snippets over theta_on"; dips shorter than ``g`` are
  bridged, exactly as CAR merges gaps <= grouping before it measures a run.
- The event is back-dated to the candidate's first snippet (``opened_at``) and ends at its last snippet over
  theta_off (``closed_at``), reported on the step of the g-th miss (or by ``close()`` at shutdown).
- Warm-up: the first ``warmup`` snippets of a stream count as below the threshold (their scores are still
  reported), so no candidate starts before the window holds ``warmup`` snippets of context. A camera that comes
  online, or a stream that restarts, does not alert on outputs that saw almost no past.

Exact equivalence with the offline refinement: ``smooth_offline(x, SmootherParams.from_car(p))`` equals
``car.segments(x, p)`` for every [L, T] sequence x when (1) theta_on == theta_off == p.score_threshold,
(2) m == p.filter + 1 and g == p.grouping + 1 (m = g = 1 when CAR is off), (3) the aggregation and its
parameters are p's, warmup == 0, and (4) the stream is closed with ``close()`` after its last snippet, so an event still
open at the end ends at its last snippet over the threshold, as the offline run does. ``from_car`` gives
(1)-(3). Proof sketch: an offline merged run is a maximal chain of on-snippets with gaps < g, kept iff it
spans >= m; the candidate is the same chain built left to right and its span only grows, so it opens iff the
chain is kept, with the same first and last snippet. On the device the student's levels differ from the
teacher's upsampled ones, so the equivalence concerns the algorithm on identical inputs, not teacher vs
student.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from edge.car import REF_VOTE_THRESHOLDS, CarParams, Run, aggregate, check_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmootherUpdate:
    index: int  # snippet index in this stream (0-based)
    score: float  # scale-aggregated anomaly score of this snippet
    active: bool  # an event is open after this snippet
    opened_at: int | None  # set on the step an event opens: index of its back-dated first snippet
    closed_at: int | None  # set on the step an event closes: index of its last snippet (inclusive)


@dataclass(frozen=True)
class SmootherParams:
    """Hysteresis and level aggregation of the causal smoother.

    theta_on: a candidate starts / grows at snippets with score >= theta_on.
    theta_off: an open event is kept alive by snippets with score >= theta_off (theta_off <= theta_on).
    m: snippets a candidate must span (first to newest over threshold) to open; causal "drop runs <= m - 1".
    g: consecutive snippets below threshold that end a candidate or close an event;
        causal "merge gaps <= g - 1".
    aggregation, rbf_eps, vote_thresholds: how the levels of a snippet become one score (see ``edge.car``).
    warmup: snippets at the start of a stream that cannot start an event (the window's context is too short);
        0 = none.
    """

    theta_on: float = 0.5
    theta_off: float = 0.5
    m: int = 5
    g: int = 7
    aggregation: Literal["rbf", "vote", "mean"] = "rbf"
    rbf_eps: float = 1e-3
    vote_thresholds: tuple[float, ...] = REF_VOTE_THRESHOLDS
    warmup: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.theta_off <= self.theta_on <= 1.0:
            raise ValueError(
                f"SmootherParams: theta_on={self.theta_on!r}, theta_off={self.theta_off!r}; "
                "expected 0 < theta_off <= theta_on <= 1"
            )
        for name in ("m", "g"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SmootherParams.{name}={value!r}; expected an integer >= 1 (snippets)")
        if not isinstance(self.warmup, (int, np.integer)) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise ValueError(f"SmootherParams.warmup={self.warmup!r}; expected an integer >= 0 (snippets)")
        if self.aggregation not in ("rbf", "vote", "mean"):
            raise ValueError(
                f"SmootherParams.aggregation={self.aggregation!r}; expected 'rbf', 'vote' or 'mean'"
            )

    @classmethod
    def from_car(cls, car: CarParams) -> SmootherParams:
        """The causal equivalent of an offline refinement (see the module docstring for the exact terms)."""
        theta = car.score_threshold
        if not car.enabled:
            return cls(theta_on=theta, theta_off=theta, m=1, g=1, aggregation="mean")
        return cls(
            theta_on=theta,
            theta_off=theta,
            m=car.filter + 1,
            g=car.grouping + 1,
            aggregation=car.aggregation,
            rbf_eps=car.rbf_eps,
            vote_thresholds=car.vote_thresholds,
        )

    def score(self, level_probs: ArrayLike) -> np.ndarray:
        """The score the smoother thresholds: the level aggregation of per-level anomaly probabilities.
        [..., L] -> [...] float64 (one snippet [L] -> a 0-d array)."""
        x = check_scores(level_probs, "level_probs")
        if x.ndim == 0 or x.shape[-1] == 0:
            raise ValueError(f"level_probs has shape {x.shape}; expected [..., L] with at least one level")
        flat = x.reshape(-1, x.shape[-1])  # [N, L]
        return aggregate(flat.T, self.car_params()).reshape(x.shape[:-1])

    def car_params(self) -> CarParams:
        """CarParams with this aggregation (only the aggregation fields matter to the smoother)."""
        if self.aggregation == "mean":
            return CarParams(enabled=False)
        return CarParams(
            aggregation=self.aggregation, rbf_eps=self.rbf_eps, vote_thresholds=self.vote_thresholds
        )


class Hysteresis:
    """The state machine of the smoother on aggregated scores (see the module docstring)."""

    def __init__(self, params: SmootherParams) -> None:
        self.params = params
        self.index = -1  # last snippet seen
        self.start: int | None = None  # first snippet of the candidate / open event
        self.last: int | None = None  # last snippet over threshold of the candidate / open event
        self.active = False

    def step(self, score: float) -> tuple[int | None, int | None]:
        """Advance by one snippet -> (opened_at, closed_at), each None unless it happens on this step."""
        p = self.params
        self.index += 1
        t = self.index
        on = t >= p.warmup and score >= (p.theta_off if self.active else p.theta_on)
        if self.start is None:
            if not on:
                return None, None
            self.start = t
        if on:
            self.last = t
            if not self.active and t - self.start + 1 >= p.m:
                self.active = True
                return self.start, None
            return None, None
        assert self.last is not None
        if t - self.last >= p.g:
            closed = self.last if self.active else None
            self.start, self.last, self.active = None, None, False
            return None, closed
        return None, None

    def close(self) -> int | None:
        """End the stream: the open event's last snippet over threshold, or None; forgets any candidate."""
        closed = self.last if self.active else None
        self.start, self.last, self.active = None, None, False
        return closed


class CausalSmoother:
    """Per-stream smoother: ``update(level_probs [L], class_probs [M] | None) -> SmootherUpdate``.

    ``event_class_probs()`` is the score-weighted mean of the class probabilities over the event's snippets
    (first to last over threshold, dips included): of the open event, or of the event that the latest step or
    ``close()`` closed (until the next update). The category is its argmax.
    """

    def __init__(self, params: SmootherParams) -> None:
        self.params = params
        self._hyst = Hysteresis(params)
        self._levels: int | None = None
        self._classes: int | None = None
        self._last_score = 0.0
        # score-weighted class sums over the candidate up to its last snippet over threshold (committed) and
        # over the snippets since then (tail: committed when the candidate goes on, dropped when it ends)
        self._sum: np.ndarray | None = None
        self._tail: np.ndarray | None = None
        self._weight = self._tail_weight = 0.0
        self._closed_probs: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """An event is open."""
        return self._hyst.active

    @property
    def index(self) -> int:
        """Index of the last snippet processed (-1 before the first)."""
        return self._hyst.index

    def update(self, level_probs: ArrayLike, class_probs: ArrayLike | None = None) -> SmootherUpdate:
        """Process the newest snippet: its per-level anomaly probabilities [L] and class probabilities [M]."""
        levels = check_scores(level_probs, "level_probs").reshape(-1)
        if levels.size == 0:
            raise ValueError("level_probs is empty; expected one anomaly probability per level")
        if self._levels is None:
            self._levels = levels.size
        if levels.size != self._levels:
            raise ValueError(
                f"level_probs has {levels.size} levels; expected {self._levels} as on earlier steps"
            )
        probs = None
        if class_probs is not None:
            probs = check_scores(class_probs, "class_probs").reshape(-1)
            if self._classes is None:
                self._classes = probs.size
            if probs.size != self._classes:
                raise ValueError(f"class_probs has {probs.size} classes; expected {self._classes} as before")

        score = float(self.params.score(levels))
        self._last_score = score
        self._closed_probs = None
        idle_before = self._hyst.start is None
        opened_at, closed_at = self._hyst.step(score)
        self._accumulate(score, probs, idle_before, closed_at)
        if opened_at is not None:
            log.debug("event opened at snippet %d (back-dated to %d)", self.index, opened_at)
        if closed_at is not None:
            log.debug("event closed at snippet %d (last snippet %d)", self.index, closed_at)
        return SmootherUpdate(self.index, score, self.active, opened_at, closed_at)

    def close(self) -> SmootherUpdate:
        """Shutdown: close an open event at its last snippet over threshold (``closed_at``; None if none was
        open) and forget any candidate. The stream may go on afterwards, with indices continuing."""
        probs = self.event_class_probs()
        closed_at = self._hyst.close()
        self._reset_sums()
        self._closed_probs = probs if closed_at is not None else None
        return SmootherUpdate(self.index, self._last_score, False, None, closed_at)

    def event_class_probs(self) -> np.ndarray | None:
        """Score-weighted mean class probabilities [M] of the open (or just closed) event; None otherwise."""
        if self._closed_probs is not None:
            return self._closed_probs.copy()
        return self._mean_probs() if self.active else None

    def _accumulate(self, score: float, probs: np.ndarray | None, new_candidate: bool, closed_at: int | None
                    ) -> None:
        """Update the score-weighted class sums after the hysteresis step of snippet ``self.index``."""
        hyst = self._hyst
        if closed_at is not None:
            self._closed_probs = self._mean_probs()
        if hyst.start is None or new_candidate:
            self._reset_sums()
        if hyst.start is None or probs is None:
            return
        if self._sum is None or self._tail is None:
            self._sum, self._tail = np.zeros_like(probs), np.zeros_like(probs)
        self._tail += score * probs
        self._tail_weight += score
        if hyst.last == hyst.index:  # this snippet is over threshold: the tail joins the event
            self._sum += self._tail
            self._weight += self._tail_weight
            self._tail[:] = 0.0
            self._tail_weight = 0.0

    def _mean_probs(self) -> np.ndarray | None:
        return self._sum / self._weight if self._sum is not None and self._weight > 0 else None

    def _reset_sums(self) -> None:
        self._sum = self._tail = None
        self._weight = self._tail_weight = 0.0


def smooth_offline(level_scores: np.ndarray, params: SmootherParams) -> list[Run]:
    """Run the causal smoother over a recorded sequence [L, T] (or [T]); the events as inclusive runs."""
    x = np.asarray(level_scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"level_scores has shape {x.shape}; expected [L, T] or [T]")
    smoother = CausalSmoother(params)
    events: list[Run] = []
    start: int | None = None
    updates = [smoother.update(x[:, t]) for t in range(x.shape[1])] + [smoother.close()]
    for u in updates:
        if u.opened_at is not None:
            start = u.opened_at
        if u.closed_at is not None:
            assert start is not None
            events.append((start, u.closed_at))
            start = None
    return events
