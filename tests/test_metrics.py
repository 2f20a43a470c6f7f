"""VadCLIP-protocol metrics: hand-computed cases for every piece and for the whole mAP."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.data.release import GroundTruth
from train.data.labels import UCF, XD, LabelMap
from train.evaluation.metrics import (
    average_precision,
    class_ap,
    detection_map,
    evaluate_scores,
    frame_auc_ap,
    segment_iou,
    threshold_runs,
    to_frames,
    video_confidence,
)

TWO_UCF = LabelMap("ucf", ("Normal", "Abuse"), ("normal", "abuse"))  # UCF convention: normal videos say 'A'
TWO_XD = LabelMap("xd", ("A", "B1"), ("normal", "fighting"))  # XD convention: 'A' is class 0


def two_class(anomaly: list[float]) -> np.ndarray:
    """[T] anomaly-class probabilities -> [T, 2] (normal, anomaly) float32, like a softmax output."""
    a = np.asarray(anomaly, np.float32)
    return np.stack([1 - a, a], axis=1)


# ----------------------------------------------------------------------------------------------- frame level


def test_frame_auc_ap_hand_computed() -> None:
    # scores 0.1 0.4 | 0.35 0.8, labels 0 0 | 1 1. AUC: 3 of the 4 (pos, neg) pairs are ordered = 0.75.
    # AP: ranks 0.8(+) 0.4(-) 0.35(+): recall .5 at precision 1, recall 1 at precision 2/3 -> 5/6.
    gt = np.repeat([0, 0, 1, 1], 16).astype(np.float32)
    auc, ap = frame_auc_ap([np.array([0.1, 0.4]), np.array([0.35, 0.8])], gt)
    assert auc == pytest.approx(0.75)
    assert ap == pytest.approx(5 / 6)


def test_frame_scores_are_repeated_16x() -> None:
    # One video, 2 snippets [0.2, 0.9]; the anomaly covers only the last 8 frames of snippet 2.
    # Frames: 16 x 0.2 (neg), 8 x 0.9 (neg), 8 x 0.9 (pos).
    # AUC = (8*16*1 + 8*8*0.5) / (8*24) = 5/6; AP: one threshold at 0.9 with precision 8/16 -> 0.5.
    gt = np.array([0] * 24 + [1] * 8, np.float32)
    auc, ap = frame_auc_ap([np.array([0.2, 0.9])], gt)
    assert auc == pytest.approx(5 / 6)
    assert ap == pytest.approx(0.5)
    assert to_frames(np.array([1, 2])).tolist() == [1] * 16 + [2] * 16


def test_frame_length_mismatch_and_one_class_are_errors() -> None:
    with pytest.raises(ValueError, match="31 frames.*32"):
        frame_auc_ap([np.array([0.2, 0.9])], np.zeros(31))
    with pytest.raises(ValueError, match="single class"):
        frame_auc_ap([np.array([0.2, 0.9])], np.zeros(32))


# ------------------------------------------------------------------------------------------ detection pieces


def test_threshold_runs() -> None:
    # max .9, min .1 -> threshold .9 - .8 * .6 = .42
    assert threshold_runs(np.array([0.1, 0.5, 0.9, 0.2, 0.8, 0.8])).tolist() == [[1, 3], [4, 6]]
    # threshold .4: the one-frame run at 1 is dropped (segments need >= 2 frames)
    assert threshold_runs(np.array([0.0, 1.0, 0.0, 1.0, 1.0])).tolist() == [[3, 5]]
    assert threshold_runs(np.full(8, 0.3)).shape == (0, 2)


def test_segment_iou_on_half_open_frames() -> None:
    others = np.array([[5, 15], [10, 20], [0, 10], [2, 4], [7, 3]])
    np.testing.assert_allclose(segment_iou(np.array([0, 10]), others), [5 / 15, 0, 1, 2 / 10, 0])


def test_average_precision() -> None:
    assert average_precision(np.array([True, False, True]), 3) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision(np.array([False, False]), 2) == 0.0
    assert average_precision(np.array([True]), 0) == 0.0


def test_video_confidence_is_mean_of_top_sixteenth_of_frames() -> None:
    # 20 snippets -> 320 frames -> top 20 frames = 16 x 0.9 + 4 x 0.5 -> (14.4 + 2) / 20 = 0.82
    snippets = np.full((20, 1), 0.1)
    snippets[3], snippets[7] = 0.9, 0.5
    assert video_confidence(to_frames(snippets)) == pytest.approx([0.82])


# ------------------------------------------------------------------------------------------------- mAP@IoU


def test_one_perfect_segment_scores_100_at_every_iou() -> None:
    result = detection_map([two_class([0.1, 0.9, 0.9, 0.1])], [[[16, 48]]], [["B1"]], TWO_XD.codes,
                           include_normal=False)
    assert result == {"0.1": 100.0, "0.2": 100.0, "0.3": 100.0, "0.4": 100.0, "0.5": 100.0, "avg": 100.0}


def test_partial_overlap_hits_up_to_its_iou() -> None:
    # prediction [32, 64) vs truth [16, 48): IoU 16/48 = 1/3 -> hit at 0.1..0.3, miss at 0.4, 0.5
    result = detection_map([two_class([0.1, 0.1, 0.9, 0.9])], [[[16, 48]]], [["B1"]], TWO_XD.codes,
                           include_normal=False)
    assert [result[k] for k in ("0.1", "0.2", "0.3", "0.4", "0.5")] == [100, 100, 100, 0, 0]
    assert result["avg"] == pytest.approx(60.0)
    # prediction [32, 64) vs truth [0, 64): IoU exactly 0.5 counts as a hit
    result = detection_map([two_class([0.1, 0.1, 0.9, 0.9])], [[["0", "64"]]], [["B1"]], TWO_XD.codes,
                           include_normal=False)
    assert result["0.5"] == 100.0


def test_false_positive_lowers_ap_by_hand_computed_amount() -> None:
    # v0: run [16,48) = its truth, confidence .95 + .7 * .95 = 1.615
    # v1: threshold .42 -> runs [0,16) (wrong, 0.9 + .7 * .9 = 1.53) and [32,64) (right, 0.8 + .63 = 1.43)
    # ranking hit, miss, hit -> AP = (1/1 + 2/3) / 2 = 5/6
    segments, labels = [[[16, 48]], [[32, 64]]], [["B1"], ["B1"]]
    clean = [two_class([0.1, 0.95, 0.95, 0.1]), two_class([0.1, 0.1, 0.8, 0.8, 0.1])]
    noisy = [clean[0], two_class([0.9, 0.1, 0.8, 0.8, 0.1])]
    assert detection_map(clean, segments, labels, TWO_XD.codes, include_normal=False)["avg"] == 100.0
    result = detection_map(noisy, segments, labels, TWO_XD.codes, include_normal=False)
    assert result == pytest.approx({k: 500 / 6 for k in ("0.1", "0.2", "0.3", "0.4", "0.5", "avg")})


def test_video_confidence_ranks_segments() -> None:
    # 32 snippets each -> confidence = mean of the top 2 snippets. v0: run [64,96) of 0.9 = its truth,
    # 0.9 + .7 * 0.9 = 1.53. v1 (normal): a lone 0.95 snippet and a 0.3 one -> 0.95 + .7 * 0.625 = 1.3875.
    # The higher peak of v1 ranks second, so the hit comes first: AP 100 (peaks alone would give 50).
    v0, v1 = np.full(32, 0.1), np.full(32, 0.1)
    v0[4:6], v1[10], v1[20] = 0.9, 0.95, 0.3
    result = detection_map([two_class(v0), two_class(v1)], [[[64, 96]], [[0, 512]]], [["B1"], ["A"]],
                           TWO_XD.codes, include_normal=False)
    assert result["avg"] == 100.0


def normal_and_anomalous(anomaly_code: str) -> tuple[list[np.ndarray], list, list]:
    """v0 anomalous (truth [16,48)), v1 normal (truth [0,64) labelled 'A'), scores that find both."""
    scores = [two_class([0.1, 0.95, 0.95, 0.1]), two_class([0.2, 0.05, 0.05, 0.15])]
    return scores, [[[16, 48]], [[0, 64]]], [[anomaly_code], ["A"]]


def test_ucf_convention_averages_in_a_normal_class_that_scores_zero() -> None:
    scores, segments, labels = normal_and_anomalous("Abuse")
    assert class_ap(scores, segments, labels, TWO_UCF.codes)[:, 0].tolist() == [0] * 5  # 'A' is not 'Normal'
    reference = detection_map(scores, segments, labels, TWO_UCF.codes)
    corrected = detection_map(scores, segments, labels, TWO_UCF.codes, include_normal=False)
    assert corrected["avg"] == 100.0 and reference["avg"] == 50.0


def test_xd_convention_scores_the_normal_class_on_normal_videos() -> None:
    # normal class on v1: threshold .95 - .15 * .6 = .86 -> run [16,48) vs truth [0,64): IoU .5, ranked
    # first (1.615 vs 1.53 for v0's two runs) -> AP 100 at every IoU <= .5
    scores, segments, labels = normal_and_anomalous("B1")
    np.testing.assert_allclose(class_ap(scores, segments, labels, TWO_XD.codes), 100.0)


def test_detection_input_errors_name_the_problem() -> None:
    scores = [two_class([0.1, 0.9, 0.9, 0.1])]
    with pytest.raises(ValueError, match="unknown class 'B9'"):
        detection_map(scores, [[[16, 48]]], [["B9"]], TWO_XD.codes)
    with pytest.raises(ValueError, match="1 videos of class scores but 2"):
        detection_map(scores, [[[16, 48]], [[0, 8]]], [["B1"], ["B1"]], TWO_XD.codes)
    with pytest.raises(ValueError, match=r"video 0: expected \[T, 3\], got \[4, 2\]"):
        detection_map(scores, [[[16, 48]]], [["B1"]], ("A", "B1", "B2"))


def test_real_ucf_layout_reference_map_is_13_14_of_corrected() -> None:
    """On the real UCF-Crime test annotations the reference mean includes a normal class that never scores."""
    from train.data.layouts import real_test_videos

    real = real_test_videos("ucf")
    segments, labels = [s for _, _, s, _ in real], [c for _, _, _, c in real]
    rng = np.random.default_rng(0)
    scores = []
    for segs, labs in zip(segments, labels):
        length = max(int(float(end)) for _, end in segs) // 16 + 1
        logits = rng.normal(size=(length, UCF.num_classes)).cumsum(axis=0)
        for (start, end), lab in zip(segs, labs):
            if lab in UCF.codes:
                logits[int(start) // 16:int(end) // 16 + 1, UCF.codes.index(lab)] += 3.0
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores.append((probs / probs.sum(axis=1, keepdims=True)).astype(np.float32))
    ap = class_ap(scores, segments, labels, UCF.codes)
    assert (ap[:, 0] == 0).all() and (ap[:, 1:] > 0).any()
    reference = detection_map(scores, segments, labels, UCF.codes)
    corrected = detection_map(scores, segments, labels, UCF.codes, include_normal=False)
    assert reference == pytest.approx({k: v * 13 / 14 for k, v in corrected.items()})


# ------------------------------------------------------------------------------------------------ test set


def tiny_truth() -> GroundTruth:
    """Two XD-style videos: v0 with a fight on frames [16,48), v1 normal; 4 snippets each."""
    gt_frames = np.concatenate([np.repeat([0, 1, 1, 0], 16), np.zeros(64)]).astype(np.float32)
    return GroundTruth(["v0", "v1"], [4, 4], gt_frames, [np.array([[16.0, 48.0]]), np.array([[0.0, 64.0]])],
                       [["B1"], ["A"]], XD)


def xd_scores(anomaly: list[float]) -> np.ndarray:
    probs = np.full((len(anomaly), XD.num_classes), 0.01, np.float32)
    probs[:, 1] = anomaly
    probs[:, 0] = 1 - probs[:, 1:].sum(axis=1)
    return probs


def test_evaluate_scores_end_to_end() -> None:
    binary = {"v0": np.array([0.1, 0.8, 0.9, 0.2]), "v1": np.array([0.3, 0.1, 0.2, 0.1]),
              "extra": np.zeros(3)}
    classes = {"v0": xd_scores([0.1, 0.9, 0.9, 0.1]), "v1": xd_scores([0.2, 0.05, 0.05, 0.15])}
    result = evaluate_scores(binary, classes, tiny_truth())
    assert result["auc"] == pytest.approx(1.0) and result["ap"] == pytest.approx(1.0)
    # B1 and the normal class are found perfectly (see the XD convention test); B2..G have no truth: AP 0
    assert result["map"]["avg"] == pytest.approx(200 / 7)
    assert result["map_corrected"]["avg"] == pytest.approx(100 / 6)
    assert evaluate_scores(binary, None, tiny_truth())["map"] is None


def test_evaluate_scores_names_missing_videos_and_bad_lengths() -> None:
    with pytest.raises(ValueError, match="missing for 1 of 2 test videos: v1"):
        evaluate_scores({"v0": np.zeros(4)}, None, tiny_truth())
    with pytest.raises(ValueError, match=r"binary scores of video 'v1': got shape \[5\], expected \[4\]"):
        evaluate_scores({"v0": np.zeros(4), "v1": np.zeros(5)}, None, tiny_truth())
    classes = {"v0": np.zeros((4, 2)), "v1": np.zeros((4, 7))}
    with pytest.raises(ValueError, match=r"classes scores of video .v0.: got shape \[4, 2\], expected"):
        evaluate_scores({"v0": np.zeros(4), "v1": np.ones(4)}, classes, tiny_truth())
