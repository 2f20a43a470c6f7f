"""CAR: hand-computed cases for every pure function and the composed refinement."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge.car import (
    CarParams,
    aggregate,
    binary_runs,
    drop_short_runs,
    flat_gaussian,
    merge_runs,
    rbf_aggregate,
    rbf_weights,
    refine,
    segments,
    upsample_levels,
    vote_aggregate,
)

# ------------------------------------------------------------------------------------------ aggregation


def test_rbf_down_weights_an_outlier_level() -> None:
    x = np.array([[0.2], [0.3], [0.9]])  # 3 levels, 1 snippet
    # by hand: centre = median = 0.3; |x - c| = 0.1, 0, 0.6 -> MAD = 0.1; sigma = 1.4826 * 0.1
    sigma2 = 0.14826**2
    raw = [math.exp(-0.01 / (2 * sigma2)), 1.0, math.exp(-0.36 / (2 * sigma2))]
    expected_w = np.array(raw) / sum(raw)
    np.testing.assert_allclose(rbf_weights(x)[:, 0], expected_w, rtol=1e-9)
    assert expected_w[2] < 1e-3  # the outlier scale hardly counts
    expected = (0.2 * raw[0] + 0.3 * raw[1] + 0.9 * raw[2]) / sum(raw)
    assert rbf_aggregate(x)[0] == pytest.approx(expected, rel=1e-9)
    assert rbf_aggregate(x)[0] == pytest.approx(0.2558, abs=1e-4)  # vs the plain mean 0.4667


def test_rbf_identical_levels_keep_their_score() -> None:
    x = np.array([[0.7, 0.0, 1.0], [0.7, 0.0, 1.0], [0.7, 0.0, 1.0]])
    np.testing.assert_allclose(rbf_weights(x), np.full((3, 3), 1 / 3))
    np.testing.assert_allclose(rbf_aggregate(x), [0.7, 0.0, 1.0])


def test_rbf_two_levels_is_their_mean_and_one_level_is_itself() -> None:
    # two levels are equally far from their median -> equal weights
    np.testing.assert_allclose(rbf_aggregate(np.array([[0.2], [0.8]])), [0.5])
    np.testing.assert_allclose(rbf_aggregate(np.array([0.1, 0.6, 0.9])), [0.1, 0.6, 0.9])


def test_rbf_zero_mad_ignores_the_odd_level() -> None:
    # MAD = 0 (two of three equal) -> bandwidth eps: the odd level gets ~0 weight
    assert rbf_aggregate(np.array([[0.5], [0.5], [0.9]]))[0] == pytest.approx(0.5, abs=1e-12)


def test_vote_counts_levels_times_thresholds() -> None:
    x = np.array([[0.6], [0.96]])
    # level 1 votes at 0.55 and 0.6 (2), level 2 at all 9 thresholds -> 11 of 18
    assert vote_aggregate(x)[0] == pytest.approx(11 / 18)
    assert vote_aggregate(np.array([[0.5], [0.54]]))[0] == 0.0


def test_vote_mode_uses_the_ref_code_fraction() -> None:
    p = CarParams.for_dataset("ucf", aggregation="vote")
    assert p.score_threshold == pytest.approx(22 / 54)
    assert CarParams.for_dataset("xd", aggregation="vote").score_threshold == pytest.approx(33 / 54)
    # 6 levels at 0.72 -> 4 votes each = 24 of 54 >= 22: on; at 0.67 -> 3 each = 18: off
    x = np.concatenate([np.full((6, 10), 0.72), np.full((6, 10), 0.67)], axis=1)
    assert segments(x, p) == [(0, 9)]


def test_car_off_is_mean_threshold_with_hard_labels() -> None:
    p = CarParams.for_dataset("ucf", enabled=False)
    x = np.array([[0.9, 0.2, 0.6, 0.6, 0.0], [0.3, 0.2, 0.4, 0.6, 0.0]])  # mean .6 .2 .5 .6 0
    assert aggregate(x, p).tolist() == pytest.approx([0.6, 0.2, 0.5, 0.6, 0.0])
    assert segments(x, p) == [(0, 0), (2, 3)]  # a 1-snippet run survives: nothing is filtered
    np.testing.assert_array_equal(refine(x, p), np.array([1, 0, 1, 1, 0], np.float32))


# ------------------------------------------------------------------------------------------- upsampling


def test_upsample_nearest_repeats_by_pyramid_stride() -> None:
    out = upsample_levels([np.arange(8) / 10, np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.6])])
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out[1], [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4])
    np.testing.assert_allclose(out[2], [0.5] * 4 + [0.6] * 4)


def test_upsample_nearest_odd_length_pyramid() -> None:
    # T = 9 with ceil-sized levels 9, 5, 3, 2: entry j of level l covers [j * 2^l, (j + 1) * 2^l)
    levels = [np.zeros(9), np.arange(5) / 10, np.arange(3) / 10, np.array([0.0, 1.0])]
    out = upsample_levels(levels)
    np.testing.assert_allclose(out[1], [0, 0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4])
    np.testing.assert_allclose(out[3], [0.0] * 8 + [1.0])


def test_upsample_linear_matches_half_pixel_interpolation() -> None:
    # stride 2, length 4: source positions (t + .5) / 2 - .5 = -.25 .25 .75 1.25 -> clamped 0 .25 .75 1
    out = upsample_levels([np.zeros(4), np.array([0.0, 1.0])], mode="linear")
    np.testing.assert_allclose(out[1], [0.0, 0.25, 0.75, 1.0])


def test_upsample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strides"):
        upsample_levels([np.zeros(4), np.zeros(2)], strides=[1])
    with pytest.raises(ValueError, match="mode"):
        upsample_levels([np.zeros(4)], mode="cubic")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ runs


def test_binary_runs_are_inclusive() -> None:
    assert binary_runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]
    assert binary_runs(np.ones(3, bool)) == [(0, 2)]
    assert binary_runs(np.zeros(3, bool)) == []


def test_merge_gap_of_grouping_merges_and_longer_does_not() -> None:
    assert merge_runs([(0, 2), (9, 10)], grouping=6) == [(0, 10)]  # gap 3..8 = 6 snippets
    assert merge_runs([(0, 2), (10, 11)], grouping=6) == [(0, 2), (10, 11)]  # gap of 7
    assert merge_runs([(0, 0), (2, 2), (4, 4)], grouping=1) == [(0, 4)]  # chains merge transitively
    assert merge_runs([(0, 0), (1, 1)], grouping=0) == [(0, 1)]


def test_drop_runs_not_longer_than_filter() -> None:
    assert drop_short_runs([(0, 3), (10, 14)], filter_len=4) == [(10, 14)]  # lengths 4 and 5


def test_single_snippet_spike_is_removed() -> None:
    x = np.zeros((3, 30))
    x[:, 12] = 0.95
    p = CarParams.for_dataset("ucf")
    assert segments(x, p) == []
    assert not refine(x, p).any()


def test_refine_merges_a_short_dip_and_drops_a_spike() -> None:
    on = np.zeros(60, bool)
    on[5:15] = on[18:28] = True  # dip of 3 <= grouping 6
    on[45] = True  # spike
    x = np.where(on, 0.9, 0.1)[None, :].repeat(3, axis=0)
    p = CarParams.for_dataset("ucf")
    assert segments(x, p) == [(5, 27)]
    labels = refine(x, p)
    assert labels.dtype == np.float32 and labels.shape == (60,)
    assert labels[:5].max() == 0 and labels[28:].max() == 0
    assert labels[16] == 1.0  # the dip lies in the plateau of the merged run


# --------------------------------------------------------------------------------------- flat Gaussian


def test_flat_gaussian_plateau_and_shoulders() -> None:
    y = flat_gaussian([(10, 29)], 40, plateau_ratio=0.5)
    # n = 20 -> plateau of 10 at 15..24, tails of 5 per side, sigma = 5 / 3
    np.testing.assert_array_equal(y[15:25], 1.0)
    assert y[:10].max() == 0 and y[30:].max() == 0
    assert y[10] == pytest.approx(math.exp(-25 / (2 * (5 / 3) ** 2)), rel=1e-6)  # exp(-4.5) at the edge
    assert y[14] == pytest.approx(math.exp(-1 / (2 * (5 / 3) ** 2)), rel=1e-6)
    assert np.all(np.diff(y[10:16]) > 0) and np.all(np.diff(y[24:30]) < 0)  # monotone shoulders
    np.testing.assert_allclose(y[10:30], y[10:30][::-1])  # symmetric
    assert y[10] < 1 and y[29] < 1


def test_flat_gaussian_small_runs() -> None:
    np.testing.assert_array_equal(flat_gaussian([(2, 2)], 5, 0.55), [0, 0, 1, 0, 0])  # plateau >= 1
    np.testing.assert_array_equal(flat_gaussian([(0, 3)], 4, 1.0), [1, 1, 1, 1])
    y = flat_gaussian([(0, 4)], 5, 0.55)  # plateau int(2.75) = 2 at 1..2, tails 1.5, odd split
    np.testing.assert_array_equal(y[1:3], 1.0)
    assert 0 < y[0] < 1 and 0 < y[4] < y[3] < 1


def test_refine_ucf_plateau_in_the_middle_of_a_kept_run() -> None:
    x = np.zeros(50)
    x[10:30] = 0.8
    y = refine(x, CarParams.for_dataset("ucf"))  # n = 20, plateau int(11) at 14..24
    np.testing.assert_array_equal(np.flatnonzero(y == 1.0), np.arange(14, 25))
    assert 0 < y[10] < y[13] < 1 and 0 < y[29] < y[25] < 1


# ------------------------------------------------------------------------------------------- parameters


def test_dataset_defaults() -> None:
    ucf, xd = CarParams.for_dataset("ucf"), CarParams.for_dataset("xd")
    assert (ucf.grouping, ucf.filter, ucf.plateau_ratio) == (6, 4, 0.55)
    assert (xd.grouping, xd.filter, xd.plateau_ratio) == (22, 5, 0.95)
    assert CarParams.for_dataset("ucf", branch="category").plateau_ratio == 0.6
    assert CarParams.for_dataset("xd", grouping=3).grouping == 3


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'shanghai'"):
        CarParams.for_dataset("shanghai")
    with pytest.raises(ValueError, match="CarParams.grouping=-1"):
        CarParams(grouping=-1)
    with pytest.raises(ValueError, match="CarParams.plateau_ratio=0"):
        CarParams(plateau_ratio=0)
    with pytest.raises(ValueError, match="aggregation"):
        CarParams(aggregation="max")  # type: ignore[arg-type]


def test_bad_scores_are_rejected() -> None:
    p = CarParams()
    with pytest.raises(ValueError, match="NaN/Inf"):
        refine(np.array([[0.1, np.nan]]), p)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        refine(np.array([[0.1, 3.2]]), p)
    with pytest.raises(ValueError, match=r"expected \[L, T\]"):
        refine(np.zeros((2, 3, 4)), p)
