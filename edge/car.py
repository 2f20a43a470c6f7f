"""CAR, consistency-aware refinement: multi-level snippet scores -> clean pseudo labels (pure numpy).

The pipeline, each step a small pure function:

1. ``upsample_levels``: per-level scores of the temporal pyramid [T_l] -> [L, T] (nearest or linear).
2. ``aggregate``: [L, T] -> one score per snippet [T]; RBF weighting around the median level (paper Eq. 1),
   or the ref-code's vote over levels and thresholds, or the plain mean (CAR off).
3. ``binary_runs`` -> ``merge_runs`` (gaps <= ``grouping``) -> ``drop_short_runs`` (length <= ``filter``).
4. ``flat_gaussian``: every kept run becomes a plateau of ones with Gaussian shoulders -> soft labels [T].

``segments`` and ``refine`` compose them. A run is ``(start, end)`` in snippets, both ends inclusive (the
same convention as the causal smoother's ``opened_at`` / ``closed_at``). A snippet is "on" when its
aggregated score is ``>= threshold``. The causal smoother (``edge.smoother``) reuses ``aggregate``, so
training, evaluation and the device compute the same score.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import numpy as np

Run = tuple[int, int]
Aggregation = Literal["rbf", "vote", "mean"]

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this = its standard deviation
REF_VOTE_THRESHOLDS = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
REF_VOTE_LEVELS = 6  # the ref-code's vote counts (22 UCF / 33 XD) are out of 6 levels x 9 thresholds


class _DatasetDefaults(NamedTuple):
    grouping: int
    filter: int
    vote_min: int  # out of REF_VOTE_LEVELS x len(REF_VOTE_THRESHOLDS) votes
    plateau_ratio: dict[str, float]  # per source branch of the pseudo labels


# Ref-code values. The two plateau ratios per dataset are read as one per source branch of the pseudo labels.
_DATASET_DEFAULTS = {
    "ucf": _DatasetDefaults(6, 4, 22, plateau_ratio={"binary": 0.55, "category": 0.6}),
    "xd": _DatasetDefaults(22, 5, 33, plateau_ratio={"binary": 0.95, "category": 0.95}),
}


@dataclass(frozen=True)
class CarParams:
    """Parameters of the refinement; ``CarParams.for_dataset("ucf" | "xd")`` gives the ref-code defaults.

    enabled: False = "CAR off" (ablation): mean over levels, ``score >= threshold`` -> hard 0/1 labels,
        no merging, no dropping, no Gaussian shoulders.
    aggregation: "rbf" (paper Eq. 1) or "vote" (ref-code) to combine the levels of one snippet.
    threshold: a snippet is on when its RBF (or mean) score is >= this.
    vote_thresholds: score thresholds a level votes at ("vote" aggregation).
    vote_fraction: a snippet is on when at least this fraction of the (level, threshold) votes is cast
        ("vote" aggregation; the ref-code's 22 of 6 x 9 = 54 votes is 22/54).
    grouping: runs separated by a gap of <= this many off snippets are merged.
    filter: runs (after merging) of <= this many snippets are dropped.
    plateau_ratio: a kept run of n snippets gets a centred plateau of max(1, int(n * plateau_ratio)) ones.
    rbf_eps: floor of the RBF bandwidth, so identical level scores (MAD = 0) are well defined.
    """

    enabled: bool = True
    aggregation: Literal["rbf", "vote"] = "rbf"
    threshold: float = 0.5
    vote_thresholds: tuple[float, ...] = REF_VOTE_THRESHOLDS
    vote_fraction: float = 22 / 54
    grouping: int = 6
    filter: int = 4
    plateau_ratio: float = 0.55
    rbf_eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.aggregation not in ("rbf", "vote"):
            raise ValueError(f"CarParams.aggregation={self.aggregation!r}; expected 'rbf' or 'vote'")
        for name in ("threshold", "vote_fraction", "plateau_ratio"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"CarParams.{name}={value!r}; expected a number in (0, 1]")
        for name in ("grouping", "filter"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"CarParams.{name}={value!r}; expected an integer >= 0 (snippets)")
        if not self.vote_thresholds or not all(0.0 <= t <= 1.0 for t in self.vote_thresholds):
            raise ValueError(
                f"CarParams.vote_thresholds={self.vote_thresholds!r}; expected a non-empty list in [0, 1]"
            )
        if not self.rbf_eps > 0.0:
            raise ValueError(f"CarParams.rbf_eps={self.rbf_eps!r}; expected a number > 0")

    @classmethod
    def for_dataset(cls, dataset: str, branch: Literal["binary", "category"] = "binary", **overrides: object
                    ) -> CarParams:
        """Ref-code defaults of ``dataset`` ("ucf" | "xd") for pseudo labels made from ``branch``."""
        try:
            d = _DATASET_DEFAULTS[dataset]
        except KeyError:
            choices = ", ".join(_DATASET_DEFAULTS)
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {choices}") from None
        if branch not in d.plateau_ratio:
            raise ValueError(f"unknown branch {branch!r}; expected one of {', '.join(d.plateau_ratio)}")
        votes = REF_VOTE_LEVELS * len(REF_VOTE_THRESHOLDS)
        base = cls(grouping=d.grouping, filter=d.filter, vote_fraction=d.vote_min / votes,
                   plateau_ratio=d.plateau_ratio[branch])
        return replace(base, **overrides)  # type: ignore[arg-type]

    @property
    def method(self) -> Aggregation:
        """The level aggregation actually used: ``aggregation``, or "mean" when CAR is off."""
        return self.aggregation if self.enabled else "mean"

    @property
    def score_threshold(self) -> float:
        """A snippet is on when ``aggregate(...) >= score_threshold``."""
        return self.vote_fraction if self.method == "vote" else self.threshold


# ---------------------------------------------------------------------------------------------- input checks


def check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """``scores`` as float64, refusing NaN/Inf and values outside [0, 1] (probabilities are expected)."""
    x = np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise ValueError(
            f"{name} contains NaN/Inf ({int(bad.sum())} values, the first at index {where}: {x[bad][0]})"
        )
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"{name} has values outside [0, 1] (min {x.min():.4g}, max {x.max():.4g}); "
            "expected probabilities (apply the sigmoid to logits first)"
        )
    return x


def _as_levels(level_scores: np.ndarray, name: str = "level_scores") -> np.ndarray:
    """[L, T] or [T] (one level) -> checked float64 [L, T]."""
    x = check_scores(level_scores, name)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} has shape {x.shape}; expected [L, T] (levels x snippets) or [T]")
    return x


# ------------------------------------------------------------------------------------------------ upsampling


def upsample_levels(
    level_scores: Sequence[np.ndarray],
    length: int | None = None,
    strides: Sequence[int] | None = None,
    mode: Literal["nearest", "linear"] = "nearest",
) -> np.ndarray:
    """Per-level scores [T_l] of a temporal pyramid -> [L, length] on the finest time axis.

    Level l has stride ``strides[l]`` (default 2**l): its entry j covers snippets [j*s, (j+1)*s).
    nearest: out[l, t] = x_l[min(t // s, T_l - 1)] (each entry repeated s times, the last one extended).
    linear: interpolation at source position (t + 0.5) / s - 0.5 clamped to [0, T_l - 1], i.e.
        ``torch.nn.functional.interpolate(mode="linear", align_corners=False, scale_factor=s)``.
    length defaults to len(level 0) * strides[0].
    """
    levels = [np.asarray(x, dtype=np.float64).reshape(-1) for x in level_scores]
    if not levels or any(x.size == 0 for x in levels):
        raise ValueError("upsample_levels needs at least one level, each with at least one score")
    strides = [2**i for i in range(len(levels))] if strides is None else list(strides)
    if len(strides) != len(levels) or any(int(s) < 1 for s in strides):
        raise ValueError(f"strides={strides!r}; expected {len(levels)} integers >= 1 (one per level)")
    length = levels[0].size * strides[0] if length is None else int(length)
    t = np.arange(length)
    out = np.empty((len(levels), length), dtype=np.float64)
    for i, (x, s) in enumerate(zip(levels, strides)):
        if mode == "nearest":
            out[i] = x[np.minimum(t // s, x.size - 1)]
        elif mode == "linear":
            src = np.clip((t + 0.5) / s - 0.5, 0.0, x.size - 1)
            out[i] = np.interp(src, np.arange(x.size), x)
        else:
            raise ValueError(f"upsample mode {mode!r}; expected 'nearest' or 'linear'")
    return out


# ----------------------------------------------------------------------------------------- level aggregation


def rbf_weights(level_scores: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Normalised RBF weights [L, T] of each level's score around the robust centre of its snippet.

    For snippet t with level scores s_1..s_L:
        c = median_l s_l,   MAD = median_l |s_l - c|,   sigma = max(1.4826 * MAD, eps)
        w_l = exp(-(s_l - c)^2 / (2 sigma^2)) / sum_k exp(-(s_k - c)^2 / (2 sigma^2))
    A level far from the others (an outlier scale) gets a weight near 0; identical levels get 1/L each.
    """
    x = _as_levels(level_scores)
    centre = np.median(x, axis=0)  # [T]
    mad = np.median(np.abs(x - centre), axis=0)  # [T]
    sigma = np.maximum(MAD_TO_SIGMA * mad, eps)  # [T]
    w = np.exp(-((x - centre) ** 2) / (2.0 * sigma**2))  # [L, T]
    return w / w.sum(axis=0)


def rbf_aggregate(level_scores: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Paper Eq. 1: score[t] = sum_l w_l[t] * s_l[t] with the weights of ``rbf_weights``. [L, T] -> [T]."""
    x = _as_levels(level_scores)
    return (rbf_weights(x, eps) * x).sum(axis=0)


def vote_aggregate(level_scores: np.ndarray, thresholds: Sequence[float] = REF_VOTE_THRESHOLDS) -> np.ndarray:
    """Ref-code alternative: fraction of (level, threshold) pairs with s_l[t] >= threshold. [L, T] -> [T].

    The ref-code counts votes over 6 levels x 9 thresholds and keeps snippets with >= 22 (UCF) / 33 (XD)
    votes; as a fraction (>= 22/54) the same rule holds for any number of levels.
    """
    x = _as_levels(level_scores)
    th = np.asarray(thresholds, dtype=np.float64)
    votes = (x[:, None, :] >= th[None, :, None]).sum(axis=(0, 1))  # [L, K, T] -> [T]
    return votes / (x.shape[0] * th.size)


def mean_aggregate(level_scores: np.ndarray) -> np.ndarray:
    """Plain mean over levels (the teacher's inference rule; CAR off). [L, T] -> [T]."""
    return _as_levels(level_scores).mean(axis=0)


def aggregate(level_scores: np.ndarray, params: CarParams) -> np.ndarray:
    """One score per snippet with the aggregation ``params.method``. [L, T] or [T] -> [T] float64."""
    if params.method == "rbf":
        return rbf_aggregate(level_scores, params.rbf_eps)
    if params.method == "vote":
        return vote_aggregate(level_scores, params.vote_thresholds)
    return mean_aggregate(level_scores)


# -------------------------------------------------------------------------------------------------- runs


def binary_runs(on: np.ndarray) -> list[Run]:
    """Maximal runs of True in a 1-D boolean array, as inclusive (start, end) pairs."""
    b = np.asarray(on, dtype=bool).reshape(-1)
    edges = np.diff(np.concatenate(([0], b.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def merge_runs(runs: Sequence[Run], grouping: int) -> list[Run]:
    """Merge consecutive sorted runs whose gap (off snippets between them, ``s2 - e1 - 1``) is <= grouping."""
    merged: list[Run] = []
    for start, end in runs:
        if merged and start - merged[-1][1] - 1 <= grouping:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def drop_short_runs(runs: Sequence[Run], filter_len: int) -> list[Run]:
    """Keep the runs longer than ``filter_len`` snippets (length = end - start + 1)."""
    return [(s, e) for s, e in runs if e - s + 1 > filter_len]


def runs_to_mask(runs: Sequence[Run], length: int) -> np.ndarray:
    """Inclusive runs -> float32 0/1 array [length]."""
    mask = np.zeros(length, dtype=np.float32)
    for s, e in runs:
        mask[s : e + 1] = 1.0
    return mask


def flat_gaussian(runs: Sequence[Run], length: int, plateau_ratio: float) -> np.ndarray:
    """Soft labels [length]: each run (start, end) of n snippets becomes a flat-topped Gaussian bump.

    plateau: P = max(1, int(n * plateau_ratio)) ones, centred (left offset (n - P) // 2).
    shoulders: the rest of the run, tail = (n - P) / 2 snippets per side; a snippet d snippets outside the
        plateau gets exp(-d^2 / (2 sigma^2)) with sigma = tail / 3, so values fall monotonically towards the
        run edges (about exp(-4.5) ~ 0.01 at a full tail). Outside every run: 0.
    Runs must not overlap (CAR's runs are separated by gaps > grouping >= 0).
    """
    out = np.zeros(length, dtype=np.float64)
    for start, end in runs:
        n = end - start + 1
        plateau = max(1, int(n * plateau_ratio))
        p0 = start + (n - plateau) // 2  # first plateau snippet
        p1 = p0 + plateau - 1  # last plateau snippet
        sigma = max((n - plateau) / 2.0 / 3.0, 1e-12)
        t = np.arange(start, end + 1)
        d = np.maximum(p0 - t, 0) + np.maximum(t - p1, 0)  # distance to the plateau, 0 on it
        out[start : end + 1] = np.exp(-(d**2) / (2.0 * sigma**2))
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------- composition


def segments(level_scores: np.ndarray, params: CarParams) -> list[Run]:
    """Refined anomalous runs (inclusive) of one video: aggregate -> threshold -> merge -> drop short.

    With CAR off: the runs of ``mean >= threshold``, nothing merged or dropped.
    """
    on = aggregate(level_scores, params) >= params.score_threshold
    runs = binary_runs(on)
    if not params.enabled:
        return runs
    return drop_short_runs(merge_runs(runs, params.grouping), params.filter)


def refine(level_scores: np.ndarray, params: CarParams) -> np.ndarray:
    """Pseudo labels [T] float32 in [0, 1] from level scores [L, T] (or [T]) of one video.

    CAR on: flat-Gaussian bumps on ``segments``; CAR off: hard 0/1 labels of ``mean >= threshold``.
    """
    length = _as_levels(level_scores).shape[1]
    runs = segments(level_scores, params)
    if not params.enabled:
        return runs_to_mask(runs, length)
    return flat_gaussian(runs, length, params.plateau_ratio)
