"""Test-set metrics under the VadCLIP evaluation protocol, so our numbers compare with the papers.

Frame level (coarse-grained). Snippet scores are repeated ``FRAMES_PER_SNIPPET`` (16) times to frame rate and
all test videos are concatenated in test order; ROC-AUC (reported for UCF-Crime) and average precision
(reported for XD-Violence) are scikit-learn's ``roc_auc_score`` / ``average_precision_score`` against the
frame-level 0/1 ground truth. Both are fractions in [0, 1].

Fine-grained detection (mAP@IoU), per class c, on class probabilities [T, M] (a softmax over classes):

1. Per video, the snippet scores are repeated 16x to frames. No smoothing is applied (the reference
   smoother is the identity), and nothing crosses a video boundary.
2. Video confidence of c = mean of the top 1/16 of its frame scores (``N // 16`` frames).
3. Threshold at ``max - (max - min) * 0.6`` of the video's scores of c (strictly above); every run of frames
   above it that is at least 2 frames long is a predicted segment ``[start, end)`` with confidence
   ``max(scores in the run) + 0.7 * video confidence``. A constant score column gives no segment.
   (The reference also applies an NMS at IoU 0.6, a no-op here: runs at one threshold never overlap.)
4. All segments of c over the test set are ranked by confidence; each, in turn, is matched greedily to the
   not yet matched ground-truth segment of class c in the same video with the highest IoU (IoU on integer
   frames, half open), a hit when that IoU >= the threshold.
5. AP of c = sum over hits of the precision at that rank / number of ground-truth segments of c (0 when there
   is none, or no hit).
6. mAP = mean over classes, in percent, at IoU 0.1 .. 0.5, and ``avg`` = their mean.

Which classes enter the mean. Ground-truth segments are matched to classes by their code. Normal videos
carry one segment labelled ``'A'`` (VadCLIP's files). In XD-Violence ``'A'`` is the code of class 0, so normal
videos are the ground truth of the normal class. In UCF-Crime class 0 is ``'Normal'``, so the reference
averages in a normal class that has no ground truth and always scores AP 0: its mAP is 13/14 of the mean over
the anomaly classes. :func:`evaluate_scores` reports both the reference value (``map``, all M classes) and
``map_corrected`` (anomaly classes 1..M-1 only; false alarms on normal videos still count).

Two deliberate differences from the reference code, neither of which changes a number on the public test
sets: a class with no predicted segment at all scores AP 0 (the reference returns 0 for the whole mAP), and
confidence ties are ranked in video order (the reference leaves their order to an unstable sort).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from edge.snippets import FRAMES_PER_SNIPPET

if TYPE_CHECKING:
    from train.data.release import GroundTruth

logger = logging.getLogger(__name__)

DEFAULT_IOUS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
NORMAL_LABEL = "A"  # label of the whole-video segment of a normal video in the ground-truth files
RUN_THRESHOLD_RATIO = 0.6  # threshold = max - (max - min) * ratio, per video and class
VIDEO_CONFIDENCE_WEIGHT = 0.7  # segment confidence = run max + weight * video confidence
MIN_SEGMENT_FRAMES = 2


# ---------------------------------------------------------------------------------------------- frame level


def to_frames(snippet_scores: np.ndarray) -> np.ndarray:
    """Snippet scores [T, ...] -> frame scores [16*T, ...] (each snippet repeated, VadCLIP's convention)."""
    return np.repeat(np.asarray(snippet_scores), FRAMES_PER_SNIPPET, axis=0)


def frame_auc_ap(binary: Sequence[np.ndarray], gt_frames: np.ndarray) -> tuple[float, float]:
    """Frame-level (ROC-AUC, AP), fractions in [0, 1].

    binary: per test video, anomaly scores [T_i] at snippet rate, in the order of ``gt_frames``.
    gt_frames: frame labels 0/1 of all videos concatenated [sum 16*T_i].
    """
    scores = np.concatenate([to_frames(np.asarray(b, np.float64).reshape(-1)) for b in binary])
    labels = np.asarray(gt_frames).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(
            f"frame ground truth has {labels.size} frames but the scores cover {scores.size} "
            f"(16 x {scores.size // FRAMES_PER_SNIPPET} snippets); expected 16 frames per snippet"
        )
    if not np.isfinite(scores).all():
        raise ValueError("anomaly scores contain NaN or Inf")
    if np.unique(labels).size < 2:
        raise ValueError("frame ground truth has a single class; AUC and AP need normal and anomalous frames")
    return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))


# ---------------------------------------------------------------------------------------- detection pieces


def video_confidence(frame_scores: np.ndarray) -> np.ndarray:
    """[N, M] frame scores -> [M]: mean of each column's top ``N // 16`` values (at least one).

    Summed in descending order in the scores' own dtype, as the reference does: near-equal segment
    confidences then rank the same way.
    """
    k = max(frame_scores.shape[0] // FRAMES_PER_SNIPPET, 1)
    return (-np.sort(-frame_scores, axis=0)[:k]).mean(axis=0)


def threshold_runs(scores: np.ndarray) -> np.ndarray:
    """[N] scores -> [K, 2] int64 half-open runs ``[start, end)`` strictly above ``max - (max - min) * 0.6``.

    Runs shorter than ``MIN_SEGMENT_FRAMES`` are dropped; a constant input has no run.
    """
    scores = np.asarray(scores, np.float64)
    hi, lo = scores.max(), scores.min()
    above = np.concatenate([[False], scores > hi - (hi - lo) * RUN_THRESHOLD_RATIO, [False]])
    edges = np.diff(above.astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= MIN_SEGMENT_FRAMES
    return np.stack([starts[keep], ends[keep]], axis=1).astype(np.int64)


def segment_iou(segment: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one half-open integer segment [2] with each of ``others`` [G, 2] -> [G] (0 where disjoint)."""
    start, end = segment
    inter = np.clip(np.minimum(end, others[:, 1]) - np.maximum(start, others[:, 0]), 0, None)
    union = max(end - start, 0) + np.clip(others[:, 1] - others[:, 0], 0, None) - inter
    return np.divide(inter, union, out=np.zeros(len(others)), where=union > 0)


def average_precision(is_hit: np.ndarray, num_gt: int) -> float:
    """Non-interpolated AP in [0, 1] of ranked detections: sum of the precisions at the hits / ``num_gt``."""
    is_hit = np.asarray(is_hit, bool)
    if num_gt == 0 or not is_hit.any():
        return 0.0
    precision = np.cumsum(is_hit) / np.arange(1, is_hit.size + 1)
    return float(precision[is_hit].sum() / num_gt)


def match_detections(
    videos: np.ndarray, bounds: np.ndarray, gt: Mapping[int, np.ndarray], iou_threshold: float
) -> np.ndarray:
    """Greedy matching of ranked detections of one class -> hit flags [K].

    videos [K] video index, bounds [K, 2] frames, both in rank order; gt: video index -> [G, 2] ground-truth
    segments of the class. Each detection takes the best remaining segment of its video if IoU >= threshold.
    """
    is_hit = np.zeros(len(videos), bool)
    remaining = {v: segs for v, segs in gt.items() if len(segs)}
    for k in np.flatnonzero(np.isin(videos, list(remaining))):
        segs = remaining.get(int(videos[k]))
        if segs is None or not len(segs):
            continue
        iou = segment_iou(bounds[k], segs)
        best = int(np.argmax(iou))
        if iou[best] >= iou_threshold:
            is_hit[k] = True
            remaining[int(videos[k])] = np.delete(segs, best, axis=0)
    return is_hit


def class_detections(frame_scores: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """One video's frame scores [N] of one class -> (segments [K, 2], confidences [K])."""
    if confidence <= 0:  # the reference zeroes a class with no confidence in the video: no segment
        return np.zeros((0, 2), np.int64), np.zeros(0)
    runs = threshold_runs(frame_scores)
    peaks = np.array([frame_scores[s:e].max() for s, e in runs], np.float64)
    return runs, peaks + VIDEO_CONFIDENCE_WEIGHT * float(confidence)


def _gt_by_class(
    segments: Sequence[Sequence[Sequence[float | str]]],
    seg_labels: Sequence[Sequence[str]],
    codes: Sequence[str],
) -> list[dict[int, np.ndarray]]:
    """Ground truth -> per class: video index -> [G, 2] int64 frames. ``'A'`` segments of a dataset without
    an ``'A'`` code belong to no class (the reference's UCF behaviour)."""
    index = {code: c for c, code in enumerate(codes)}
    per_class: list[dict[int, list[list[int]]]] = [{} for _ in codes]
    for v, (segs, labels) in enumerate(zip(segments, seg_labels, strict=True)):
        if len(segs) != len(labels):
            raise ValueError(f"ground truth of video {v}: {len(segs)} segments but {len(labels)} labels")
        for seg, label in zip(segs, labels):
            label = str(label)
            if label not in index:
                if label == NORMAL_LABEL:
                    continue
                raise ValueError(
                    f"ground truth of video {v}: unknown class {label!r}; expected one of {', '.join(codes)} "
                    f"or {NORMAL_LABEL!r} for a normal video"
                )
            start, end = (int(float(x)) for x in seg)  # UCF's files store the frame numbers as strings
            per_class[index[label]].setdefault(v, []).append([start, end])
    return [{v: np.array(s, np.int64) for v, s in cls.items()} for cls in per_class]


def class_ap(
    class_scores: Sequence[np.ndarray],
    segments: Sequence[Sequence[Sequence[float | str]]],
    seg_labels: Sequence[Sequence[str]],
    codes: Sequence[str],
    ious: Sequence[float] = DEFAULT_IOUS,
) -> np.ndarray:
    """Detection AP of every class at every IoU threshold -> [len(ious), M] in percent (module protocol).

    class_scores: per video [T_i, M] class probabilities at snippet rate; segments / seg_labels: per video the
    ground-truth segments ``[[start, end], ...]`` in frames and their class codes; codes: the M class codes.
    """
    num_classes = len(codes)
    if not len(class_scores) == len(segments) == len(seg_labels):
        raise ValueError(
            f"{len(class_scores)} videos of class scores but {len(segments)} of ground-truth segments and "
            f"{len(seg_labels)} of labels"
        )
    if any(not 0 < iou <= 1 for iou in ious):
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {list(ious)}")
    frames = []
    for v, scores in enumerate(class_scores):
        scores = np.asarray(scores)
        if not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float64)
        if scores.ndim != 2 or scores.shape[1] != num_classes or scores.shape[0] == 0:
            raise ValueError(
                f"class scores of video {v}: expected [T, {num_classes}], got {list(scores.shape)}"
            )
        if not np.isfinite(scores).all():
            raise ValueError(f"class scores of video {v} contain NaN or Inf")
        frames.append(to_frames(scores))  # [16T, M], dtype kept (float32 from a softmax, as in the reference)
    confidences = [video_confidence(f) for f in frames]  # per video [M]
    gt = _gt_by_class(segments, seg_labels, codes)
    missing = [codes[c] for c in range(1, num_classes) if not gt[c]]
    if missing:
        logger.warning("no ground-truth segment for classes %s: their AP is 0", ", ".join(missing))

    ap = np.zeros((len(ious), num_classes))  # [I, M]
    for c in range(num_classes):
        videos, bounds, conf = [], [], []
        for v, (f, vc) in enumerate(zip(frames, confidences)):
            segs, seg_conf = class_detections(f[:, c], vc[c])
            videos.append(np.full(len(segs), v))
            bounds.append(segs)
            conf.append(seg_conf)
        order = np.argsort(-np.concatenate(conf), kind="stable")  # rank by confidence, ties in video order
        ranked_videos, ranked_bounds = np.concatenate(videos)[order], np.concatenate(bounds)[order]
        num_gt = sum(len(s) for s in gt[c].values())
        for i, iou in enumerate(ious):
            is_hit = match_detections(ranked_videos, ranked_bounds, gt[c], iou)
            ap[i, c] = 100.0 * average_precision(is_hit, num_gt)
    return ap


def map_summary(ap: np.ndarray, ious: Sequence[float], classes: Sequence[int]) -> dict[str, float]:
    """Per-class AP [I, M] -> {"0.1": mAP, ..., "avg": mean over IoUs}, averaged over ``classes``."""
    maps = ap[:, list(classes)].mean(axis=1)
    return {**{f"{iou:g}": float(m) for iou, m in zip(ious, maps)}, "avg": float(maps.mean())}


def detection_map(
    class_scores: Sequence[np.ndarray],
    segments: Sequence[Sequence[Sequence[float | str]]],
    seg_labels: Sequence[Sequence[str]],
    codes: Sequence[str],
    ious: Sequence[float] = DEFAULT_IOUS,
    include_normal: bool = True,
) -> dict[str, float]:
    """Fine-grained mAP in percent: {"0.1": .., "0.5": .., "avg": ..} (keys follow ``ious``).

    ``include_normal=True`` averages over all M classes, as the reference does; ``False`` over the anomaly
    classes 1..M-1 only. Arguments as in :func:`class_ap`.
    """
    ap = class_ap(class_scores, segments, seg_labels, codes, ious)
    return map_summary(ap, ious, range(0 if include_normal else 1, len(codes)))


# ------------------------------------------------------------------------------------------------ test set


def evaluate_scores(
    binary: Mapping[str, np.ndarray], classes: Mapping[str, np.ndarray] | None, truth: GroundTruth
) -> dict:
    """All test-set metrics of one model's scores.

    binary: video name -> anomaly scores [T] (snippet rate); classes: video name -> class probabilities
    [T, M], or None to skip detection. Every video of ``truth.names`` must be present with its length
    ``truth.num_snippets``; extra videos are ignored with a warning.

    Returns {"auc": float, "ap": float} as fractions in [0, 1], and "map" / "map_corrected": {"0.1".."0.5",
    "avg"} in percent (None without class scores): ``map`` averages all classes as the papers do,
    ``map_corrected`` the anomaly classes only (see the module docstring).
    """
    names, lengths = list(truth.names), [int(t) for t in truth.num_snippets]
    num_classes = truth.label_map.num_classes
    binary_list = _ordered(binary, names, lengths, "binary", ())
    auc, ap = frame_auc_ap(binary_list, truth.gt_frames)
    result: dict = {"auc": auc, "ap": ap, "map": None, "map_corrected": None}
    if classes is not None:
        class_list = _ordered(classes, names, lengths, "classes", (num_classes,))
        per_class = class_ap(class_list, truth.segments, truth.seg_labels, truth.label_map.codes)
        result["map"] = map_summary(per_class, DEFAULT_IOUS, range(num_classes))
        result["map_corrected"] = map_summary(per_class, DEFAULT_IOUS, range(1, num_classes))
    return result


def _ordered(
    scores: Mapping[str, np.ndarray], names: list[str], lengths: list[int], kind: str, tail: tuple[int, ...]
) -> list[np.ndarray]:
    """Scores of the test videos in test order, each checked to be [T, *tail]."""
    missing = [n for n in names if n not in scores]
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise ValueError(f"{kind} scores are missing for {len(missing)} of {len(names)} test videos: {shown}")
    extra = len(set(scores) - set(names))
    if extra:
        logger.warning("%s scores: ignoring %d videos that are not in the test ground truth", kind, extra)
    out = []
    for name, length in zip(names, lengths):
        array = np.asarray(scores[name])
        if array.shape != (length, *tail):
            raise ValueError(
                f"{kind} scores of video {name!r}: got shape {list(array.shape)}, expected {[length, *tail]}"
            )
        out.append(array)
    return out
