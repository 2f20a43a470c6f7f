"""The per-camera ring buffer of snippet features."""
from __future__ import annotations

import numpy as np
import pytest

from edge.ringbuffer import FeatureRing, gather_windows, ring_windows, window_index


def _f(value: float, dim: int = 4) -> np.ndarray:
    return np.full(dim, value, np.float32)


def test_filling_window_is_a_valid_prefix_with_zero_padding() -> None:
    ring = FeatureRing(window=3, dim=4)
    feats, mask = ring.window()
    assert feats.shape == (3, 4) and feats.dtype == np.float32 and not mask.any() and len(ring) == 0
    ring.push(_f(1))
    ring.push(_f(2))
    feats, mask = ring.window()
    np.testing.assert_array_equal(feats[:, 0], [1, 2, 0])
    np.testing.assert_array_equal(mask, [True, True, False])
    assert (ring.count, len(ring), ring.first_index) == (2, 2, 0)


def test_full_window_is_the_last_w_oldest_first() -> None:
    ring = FeatureRing(window=3, dim=4)
    for v in range(1, 8):
        ring.push(_f(v))
    feats, mask = ring.window()
    np.testing.assert_array_equal(feats[:, 0], [5, 6, 7])
    assert mask.all() and (ring.count, len(ring), ring.first_index) == (7, 3, 4)


def test_matches_a_naive_window_at_every_step() -> None:
    rng = np.random.default_rng(0)
    ring, history = FeatureRing(window=5, dim=8), []
    for _ in range(17):
        x = rng.normal(size=8).astype(np.float32)
        ring.push(x)
        history.append(x)
        feats, mask = ring.window()
        expected = np.zeros((5, 8), np.float32)
        last = history[-5:]
        expected[: len(last)] = last
        np.testing.assert_array_equal(feats, expected)
        assert mask.sum() == len(last)


def test_recorded_windows_are_the_rings_after_every_push() -> None:
    rng = np.random.default_rng(1)
    for n, window in ((1, 4), (3, 4), (4, 4), (11, 4), (9, 1)):
        feats = rng.normal(size=(n, 6)).astype(np.float32)
        x, mask = ring_windows(feats, window)
        index, mask2, newest = window_index(n, window)
        ring = FeatureRing(window=window, dim=6)
        for t in range(n):
            ring.push(feats[t])
            expected, expected_mask = ring.window()
            np.testing.assert_array_equal(x[t], expected)
            np.testing.assert_array_equal(gather_windows(feats, index[t]), expected)
            np.testing.assert_array_equal(mask[t], expected_mask)
            np.testing.assert_array_equal(mask2[t], expected_mask)
            assert newest[t] == ring.newest_row == len(ring) - 1
    with pytest.raises(ValueError, match="window must be a positive integer"):
        window_index(3, 0)


def test_window_is_a_copy_and_reset_clears() -> None:
    ring = FeatureRing(window=2, dim=4)
    ring.push(_f(1))
    feats, _ = ring.window()
    feats[:] = 9
    assert ring.window()[0][0, 0] == 1
    ring.reset()
    feats, mask = ring.window()
    assert ring.count == 0 and not feats.any() and not mask.any()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="window must be a positive integer"):
        FeatureRing(window=0)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        FeatureRing(window=4, dim=-1)
    ring = FeatureRing(window=4, dim=512)
    with pytest.raises(ValueError, match=r"shape \(512,\), got \(1, 512\)"):
        ring.push(np.zeros((1, 512)))
    with pytest.raises(ValueError, match="NaN or inf"):
        ring.push(np.full(512, np.nan))
    assert ring.count == 0
