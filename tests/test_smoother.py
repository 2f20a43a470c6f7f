"""Causal smoother: hysteresis cases, causality, and equality with the offline CAR segments."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.car import CarParams, aggregate, segments
from edge.smoother import CausalSmoother, SmootherParams, SmootherUpdate, smooth_offline

HI, LO = 0.9, 0.1


def _run(scores: list[float], params: SmootherParams) -> list[SmootherUpdate]:
    """Feed 1-level scores one by one."""
    smoother = CausalSmoother(params)
    return [smoother.update([s]) for s in scores]


def _pattern(*parts: tuple[float, int]) -> list[float]:
    return [v for v, n in parts for _ in range(n)]


def _random_levels(rng: np.random.Generator, levels: int, length: int) -> np.ndarray:
    """[L, T] scores with on/off stretches of random lengths and levels that sometimes disagree."""
    on = np.zeros(length, bool)
    t, state = 0, bool(rng.random() < 0.5)
    while t < length:
        n = int(rng.geometric(0.25 if state else 0.15))
        on[t : t + n] = state
        t, state = t + n, not state
    base = np.where(on, rng.uniform(0.45, 1.0, length), rng.uniform(0.0, 0.55, length))
    x = np.clip(base[None, :] + rng.normal(0, 0.1, (levels, length)), 0, 1)
    flip = rng.random((levels, length)) < 0.05
    return np.where(flip, rng.random((levels, length)), x)


# ------------------------------------------------------------------------------------------- hysteresis

P = SmootherParams(theta_on=0.5, theta_off=0.5, m=5, g=7, aggregation="mean")  # ucf: filter 4, grouping 6


def test_single_snippet_spike_opens_no_event() -> None:
    updates = _run(_pattern((LO, 5), (HI, 1), (LO, 20)), P)
    assert not any(u.active or u.opened_at is not None for u in updates)


def test_event_opens_after_m_snippets_back_dated() -> None:
    updates = _run(_pattern((LO, 3), (HI, 8), (LO, 2)), P)
    opened = [u for u in updates if u.opened_at is not None]
    assert len(opened) == 1
    assert opened[0].index == 3 + 5 - 1 and opened[0].opened_at == 3  # on the 5th snippet, start = 1st
    assert [u.active for u in updates] == [False] * 7 + [True] * 6


def test_short_dip_does_not_split_an_event_and_g_misses_close_it() -> None:
    scores = _pattern((HI, 10), (LO, 6), (HI, 10), (LO, 7), (LO, 3))  # dip of 6 < g, then 7 misses
    updates = _run(scores, P)
    assert [u.opened_at for u in updates if u.opened_at is not None] == [0]
    closed = [u for u in updates if u.closed_at is not None]
    assert len(closed) == 1 and closed[0].closed_at == 25 and closed[0].index == 25 + 7
    assert all(u.active for u in updates[4:32]) and not updates[32].active


def test_short_runs_bridged_by_short_gaps_open_an_event() -> None:
    # runs of 2 separated by gaps of 3: no 5 consecutive, but the chain spans 5 at index 6 -> CAR keeps it
    updates = _run(_pattern((HI, 2), (LO, 3), (HI, 2), (LO, 20)), P)
    assert [(u.index, u.opened_at) for u in updates if u.opened_at is not None] == [(5, 0)]
    assert [u.closed_at for u in updates if u.closed_at is not None] == [6]


def test_candidate_expires_after_g_misses() -> None:
    updates = _run(_pattern((HI, 3), (LO, 7), (HI, 3), (LO, 10)), P)
    assert not any(u.active for u in updates)


def test_hysteresis_thresholds() -> None:
    p = SmootherParams(theta_on=0.7, theta_off=0.3, m=2, g=2, aggregation="mean")
    # 0.5 neither starts nor grows a candidate, but keeps an open event alive
    updates = _run([0.5, 0.8, 0.5, 0.8, 0.5, 0.5, 0.2, 0.2, 0.5], p)
    assert [u.opened_at for u in updates] == [None, None, None, 1, None, None, None, None, None]
    assert [u.closed_at for u in updates] == [None] * 7 + [5, None]


def test_close_on_shutdown() -> None:
    smoother = CausalSmoother(P)
    for s in _pattern((HI, 6), (LO, 2)):
        smoother.update([s])
    assert smoother.active
    final = smoother.close()
    assert final == SmootherUpdate(index=7, score=LO, active=False, opened_at=None, closed_at=5)
    assert not smoother.active and smoother.close().closed_at is None
    assert smoother.update([HI]).index == 8  # the stream may go on; a new candidate starts


def test_close_forgets_a_candidate_that_never_opened() -> None:
    smoother = CausalSmoother(P)
    for s in (HI, HI, HI):
        smoother.update([s])
    assert smoother.close() == SmootherUpdate(index=2, score=HI, active=False, opened_at=None, closed_at=None)
    assert CausalSmoother(P).close().closed_at is None  # before any snippet


def test_event_class_probs_are_score_weighted_over_the_event() -> None:
    p = SmootherParams(theta_on=0.5, theta_off=0.5, m=2, g=2, aggregation="mean")
    smoother = CausalSmoother(p)
    steps = [  # (score, class probs)
        (0.2, [1.0, 0.0, 0.0]),  # before the event: excluded
        (0.6, [0.0, 1.0, 0.0]),
        (0.8, [0.0, 0.0, 1.0]),  # opens, back-dated to the previous snippet
        (0.4, [1.0, 0.0, 0.0]),  # a dip inside the event: included
        (1.0, [0.0, 1.0, 0.0]),
        (0.1, [1.0, 0.0, 0.0]),  # after the last snippet over threshold: excluded
    ]
    assert smoother.event_class_probs() is None
    for i, (score, probs) in enumerate(steps):
        smoother.update([score], np.array(probs))
        if i < 2:
            assert smoother.event_class_probs() is None  # idle, then a candidate that is not open yet
    # by hand: weights .6 .8 .4 1.0 (sum 2.8) -> [.4, 1.6, .8] / 2.8
    expected = np.array([0.4, 1.6, 0.8]) / 2.8
    np.testing.assert_allclose(smoother.event_class_probs(), expected)
    u = smoother.update([0.1], np.array([1.0, 0.0, 0.0]))  # second miss: closes
    assert u.closed_at == 4
    np.testing.assert_allclose(smoother.event_class_probs(), expected)  # still readable on the closing step
    smoother.update([0.1], np.array([1.0, 0.0, 0.0]))
    assert smoother.event_class_probs() is None


def test_event_class_probs_after_close_on_shutdown() -> None:
    p = SmootherParams(theta_on=0.5, theta_off=0.5, m=1, g=3, aggregation="mean")
    smoother = CausalSmoother(p)
    smoother.update([0.6], [0.2, 0.8])
    smoother.update([0.2], [1.0, 0.0])  # trailing dip: not part of the event
    assert smoother.close().closed_at == 0
    np.testing.assert_allclose(smoother.event_class_probs(), [0.2, 0.8])


def test_warmup_keeps_the_first_snippets_from_starting_an_event() -> None:
    scores = _pattern((HI, 12), (LO, 10))
    plain = _run(scores, P)
    warm = _run(scores, SmootherParams(**{**P.__dict__, "warmup": 3}))
    assert [u.score for u in warm] == [u.score for u in plain]  # the scores are reported unchanged
    assert [u.opened_at for u in plain if u.opened_at is not None] == [0]
    opened = [u for u in warm if u.opened_at is not None]
    assert [(u.index, u.opened_at) for u in opened] == [(3 + 5 - 1, 3)]  # the candidate starts at snippet 3
    assert [u.closed_at for u in warm if u.closed_at is not None] == [11]
    # a short anomaly inside the warm-up is not reported at all
    assert smooth_offline(np.array(_pattern((HI, 6), (LO, 20))), SmootherParams(**{**P.__dict__, "warmup": 2})) \
        == []
    assert smooth_offline(np.array(_pattern((HI, 6), (LO, 20))), P) == [(0, 5)]


def test_score_is_the_level_aggregation() -> None:
    x = np.random.default_rng(0).uniform(0, 1, (7, 4))  # [N, L]
    for params in (SmootherParams(), SmootherParams(aggregation="mean"), SmootherParams(aggregation="vote")):
        expected = aggregate(x.T, params.car_params())
        np.testing.assert_array_equal(params.score(x), expected)
        assert float(params.score(x[2])) == expected[2]
        smoother = CausalSmoother(params)
        assert [smoother.update(row).score for row in x] == expected.tolist()
    with pytest.raises(ValueError, match="level_probs has values outside"):
        SmootherParams().score([0.5, 1.5])


def test_bad_inputs_raise() -> None:
    smoother = CausalSmoother(P)
    with pytest.raises(ValueError, match="level_probs contains NaN/Inf"):
        smoother.update([0.2, np.nan])
    with pytest.raises(ValueError, match="class_probs contains NaN/Inf"):
        smoother.update([0.2, 0.3], np.array([0.5, np.inf]))
    smoother.update([0.2, 0.3])
    with pytest.raises(ValueError, match="expected 2"):
        smoother.update([0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="theta_off"):
        SmootherParams(theta_on=0.4, theta_off=0.6)
    with pytest.raises(ValueError, match="SmootherParams.m=0"):
        SmootherParams(m=0)
    with pytest.raises(ValueError, match="SmootherParams.warmup=-1"):
        SmootherParams(warmup=-1)


def test_from_car_gives_the_causal_equivalents() -> None:
    p = SmootherParams.from_car(CarParams.for_dataset("xd"))
    assert (p.theta_on, p.theta_off, p.m, p.g, p.aggregation) == (0.5, 0.5, 6, 23, "rbf")
    off = SmootherParams.from_car(CarParams.for_dataset("ucf", enabled=False))
    assert (off.m, off.g, off.aggregation) == (1, 1, "mean")
    vote = SmootherParams.from_car(CarParams.for_dataset("ucf", aggregation="vote"))
    assert vote.theta_on == pytest.approx(22 / 54) and vote.aggregation == "vote"


# ------------------------------------------------------------------------------ equality with offline CAR

CAR_VARIANTS = [
    CarParams.for_dataset("ucf"),
    CarParams.for_dataset("xd"),
    CarParams.for_dataset("ucf", aggregation="vote"),
    CarParams.for_dataset("ucf", enabled=False),
    CarParams(grouping=0, filter=0),
    CarParams(grouping=2, filter=1, threshold=0.6),
    CarParams(grouping=1, filter=7, aggregation="vote", vote_fraction=0.3),
]


@pytest.mark.parametrize("car", CAR_VARIANTS, ids=lambda c: f"{c.method}-g{c.grouping}-f{c.filter}")
def test_segments_equal_offline_car_on_random_sequences(car: CarParams) -> None:
    rng = np.random.default_rng(7)
    params = SmootherParams.from_car(car)
    for _ in range(60):
        x = _random_levels(rng, levels=int(rng.integers(1, 7)), length=int(rng.integers(1, 120)))
        assert smooth_offline(x, params) == segments(x, car)


def test_segments_equal_offline_car_on_recorded_ucf_sequences() -> None:
    """Real UCF-Crime test ground truth (snippet level) as the signal, with per-level noise."""
    from train.data.layouts import real_test_videos

    rng = np.random.default_rng(0)
    real = sorted(real_test_videos("ucf"))[:40]  # by name, as the per-video files sort
    videos = [gt[::16].astype(np.float64) for _, gt, _, _ in real]
    videos = [gt for gt in videos if gt.sum() >= 10][:8]  # 16 frames per snippet; anomalies of >= 10 snippets
    assert videos, "no anomalous UCF ground truth found"
    for gt in videos:
        x = np.clip(0.15 + 0.7 * gt[None, :] + rng.normal(0, 0.2, (3, gt.size)), 0, 1)
        for car in (CarParams.for_dataset("ucf"), CarParams.for_dataset("ucf", aggregation="vote")):
            offline = segments(x, car)
            assert smooth_offline(x, SmootherParams.from_car(car)) == offline
            assert offline, "the anomaly was not found at all"


levels_strategy = st.integers(1, 4).flatmap(
    lambda n_levels: st.integers(1, 60).flatmap(
        lambda length: arrays(np.float64, (n_levels, length), elements=st.floats(0, 1))
    )
)


@settings(max_examples=150, deadline=None)
@given(x=levels_strategy, grouping=st.integers(0, 5), filter_len=st.integers(0, 5))
def test_segments_equal_offline_car_property(x: np.ndarray, grouping: int, filter_len: int) -> None:
    car = CarParams(grouping=grouping, filter=filter_len)
    assert smooth_offline(x, SmootherParams.from_car(car)) == segments(x, car)


# ------------------------------------------------------------------------------------------- causality


def _trace(x: np.ndarray, probs: np.ndarray, params: SmootherParams) -> list[tuple]:
    smoother = CausalSmoother(params)
    out = []
    for t in range(x.shape[1]):
        u = smoother.update(x[:, t], probs[t])
        cls = smoother.event_class_probs()
        out.append((u, None if cls is None else cls.tolist()))
    return out


@settings(max_examples=100, deadline=None)
@given(
    prefix=arrays(np.float64, (2, 30), elements=st.floats(0, 1)),
    tail_a=arrays(np.float64, (2, 15), elements=st.floats(0, 1)),
    tail_b=arrays(np.float64, (2, 15), elements=st.floats(0, 1)),
    m=st.integers(1, 4),
    g=st.integers(1, 4),
)
def test_no_future_leakage(
    prefix: np.ndarray, tail_a: np.ndarray, tail_b: np.ndarray, m: int, g: int
) -> None:
    params = SmootherParams(theta_on=0.5, theta_off=0.4, m=m, g=g)
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=45)
    a = _trace(np.concatenate([prefix, tail_a], axis=1), probs, params)
    b = _trace(np.concatenate([prefix, tail_b], axis=1), probs, params)
    assert a[:30] == b[:30]
