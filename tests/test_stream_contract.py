"""One stream contract: the device loop, the streaming evaluation and the INT8 gate score a recorded sequence alike.

The head is a tiny random causal student exported to ONNX with the export's own ``export_head``; the device runs
it through ``edge.pipeline`` (ring buffer, head, smoother, events), the evaluation runs the torch student through
``train.evaluation.stream`` and the gate runs the ONNX head through ``calibration.gate.stream_scores``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from calibration.gate import stream_scores
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.bundle import load_bundle
from edge.capture import CaptureOptions, parse_source
from edge.car import CarParams
from edge.config import RuntimeConfig
from edge.pipeline import Models, Pipeline, SnippetResult, open_models
from edge.smoother import SmootherParams
from edge.snippets import Snippet
from edge.stream import SnippetOutputs, backend_head, smooth, stream_outputs
from tests.test_pipeline import LEVELS, WINDOW, tiny_bundle_path

SNIPPETS = 3 * WINDOW + 5  # the window fills, then slides


class ListSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, camera: str, payload: dict[str, Any]) -> None:
        self.messages.append(payload)


@pytest.fixture(scope="module")
def contract(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Models, torch.nn.Module, np.ndarray]:
    """(the tiny bundle's models with a head of our own, that head as a torch student, a recorded sequence)."""
    from train.export.head import export_head
    from train.models.student import Student, StudentConfig

    models = open_models(load_bundle(tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))),
                         RuntimeConfig(threads=1))
    torch.manual_seed(3)
    student = Student(StudentConfig.tiny(window=WINDOW, num_levels=LEVELS, prior_prob=0.5)).eval()
    path = export_head(student, models.text, tmp_path_factory.mktemp("head") / "head.onnx")
    rng = np.random.default_rng(0)
    feats = rng.normal(0, 0.5, (SNIPPETS, 512)).astype(np.float32)
    feats[20:34] += rng.normal(0, 1.0, 512).astype(np.float32)  # a stretch that looks different
    return dataclasses.replace(models, head=OnnxRuntimeBackend(path)), student, feats


def device_run(models: Models, feats: np.ndarray) -> tuple[list[SnippetResult], list[dict[str, Any]]]:
    """The device's scoring path (``Pipeline._score``) on one camera fed the recorded snippet features."""
    results: list[SnippetResult] = []
    sink = ListSink()
    pipeline = Pipeline(models, [parse_source(f"a={Path('recorded.mp4')}")], device="test", sinks=[sink],
                        capture=CaptureOptions(realtime=False), runtime=RuntimeConfig(threads=1),
                        on_snippet=results.append)
    stream = pipeline.streams["a"]
    for t, feature in enumerate(feats):
        snippet = Snippet(t, feature)
        assert stream.push_snippet(snippet)
        pipeline._score([(stream, snippet)])
    sink.messages += stream.end("shutdown")
    return results, sink.messages


def threshold_between(scores: np.ndarray) -> float:
    """A threshold in the widest gap between sorted scores around their 60th percentile (robust to 1e-5 noise)."""
    s = np.sort(scores)
    lo, hi = int(0.5 * len(s)), int(0.7 * len(s))
    k = lo + int(np.argmax(np.diff(s[lo:hi + 1])))
    return float((s[k] + s[k + 1]) / 2)


def test_device_evaluation_and_gate_agree_on_a_recorded_sequence(
        contract: tuple[Models, torch.nn.Module, np.ndarray]) -> None:
    from train.evaluation.stream import snippet_scores, stream_batched, stream_loop

    models, student, feats = contract
    probe, _ = device_run(models, feats)  # RBF scores with the bundle's smoother, to place a threshold
    theta = threshold_between(np.array([r.score for r in probe]))
    params = SmootherParams(theta_on=theta, theta_off=theta, m=2, g=3, warmup=4)
    device, messages = device_run(dataclasses.replace(models, smoother=params), feats)
    device_scores = np.array([r.score for r in device])
    device_levels = np.array([r.levels for r in device])
    assert [r.index for r in device] == list(range(SNIPPETS))
    assert device_scores.std() > 1e-3  # the scores vary: the comparison below is not between constants

    # the gate: same ONNX head, windows in batches, the score the device thresholds
    gate = stream_scores(models.head, feats, models.text, WINDOW, params, batch=7)
    np.testing.assert_allclose(gate, device_scores, rtol=0, atol=1e-6)

    # the streaming evaluation: the torch student, batched and one snippet at a time
    text = torch.from_numpy(models.text)
    for outputs in (stream_batched(student, feats, text, batch=11), stream_loop(student, feats, text)):
        np.testing.assert_allclose(outputs.levels, device_levels, rtol=0, atol=1e-5)
        scores, class_probs = snippet_scores(outputs, params)
        np.testing.assert_allclose(scores, device_scores, rtol=0, atol=1e-5)
        np.testing.assert_allclose(class_probs, [r.class_probs for r in device], rtol=0, atol=1e-5)
        smoothed, events = smooth(outputs, params)
        np.testing.assert_allclose(smoothed, device_scores, rtol=0, atol=1e-5)
        # the device's events are the evaluation's: same snippets, warm-up included
        starts = [m["frame_start"] // 16 for m in messages if m["type"] == "start"]
        ends = [(m["frame_end"] + 1) // 16 - 1 for m in messages if m["type"] == "end"]
        assert events and list(zip(starts, ends)) == events
        assert min(s for s, _ in events) >= params.warmup

    # the level aggregation is the smoother's, not the level mean: the numbers differ from the old gate's
    mean = device_levels.mean(axis=1)
    assert np.abs(mean - device_scores).max() > 1e-4


def test_warmup_suppresses_the_start_but_not_the_scores(contract: tuple[Models, torch.nn.Module, np.ndarray]
                                                        ) -> None:
    models, _, feats = contract
    outputs: SnippetOutputs = stream_outputs(backend_head(models.head, models.text), feats, WINDOW)
    low = float(outputs.scores(models.smoother).min())
    params = SmootherParams(theta_on=low, theta_off=low, m=2, g=2)  # every snippet is over the threshold
    scores, events = smooth(outputs, params)
    warm_scores, warm_events = smooth(outputs, dataclasses.replace(params, warmup=WINDOW))
    np.testing.assert_array_equal(scores, warm_scores)
    assert events == [(0, SNIPPETS - 1)] and warm_events == [(WINDOW, SNIPPETS - 1)]


def test_evaluation_and_export_set_the_same_warmup() -> None:
    from train.evaluation.stream import smoother_params
    from train.export.bundle import calibrated_smoother

    evaluated = smoother_params("ucf", warmup=4)
    exported, _ = calibrated_smoother(None, np.zeros((1, 2, 512), np.float32), None, None, "ucf", 0, warmup=4)
    assert evaluated == exported and evaluated.warmup == 4
    assert dataclasses.replace(evaluated, warmup=0) == SmootherParams.from_car(CarParams.for_dataset("ucf"))


def test_auto_warmup_by_hand() -> None:
    from train.evaluation.stream import auto_warmup

    window = 8
    # 40 normal videos of 40 snippets: the first 3 snippets of each always reach the threshold, later ones never
    hot_start = [np.r_[np.ones(3), np.zeros(37)] for _ in range(40)]
    assert auto_warmup(hot_start, theta=0.5, window=window) == 3
    # young and settled snippets alike (every 10th over): no warm-up needed
    alike = [(np.arange(40) % 10 == 0).astype(float) for _ in range(40)]
    assert auto_warmup(alike, theta=0.5, window=window) == 0
    # young snippets over the threshold all the way to the full window: the whole window
    assert auto_warmup([np.r_[np.ones(window), np.zeros(32)]] * 40, theta=0.5, window=window) == window
    assert auto_warmup([np.ones(5)], theta=0.5, window=window) == 0  # nothing settled: no evidence


def test_alert_latency_by_hand() -> None:
    from train.evaluation.stream import alert_latencies

    segments = np.array([[160.0, 480.0], [800.0, 960.0], [1600.0, 1700.0]])  # frames
    events = [(8, 20), (45, 55)]  # snippets: the first overlaps segment 1 from snippet 8 (frame 128) on
    # alert at the end of snippet 8 + m - 1 = frame (8 + 3) * 16 = 176 -> 16 frames after 160; segment 2 (frames
    # 800-960) is hit by the event from snippet 45 = frame 720, alerting at frame 768: before it began -> 0
    assert alert_latencies(events, segments, m=3, fps=16.0) == [1.0, 0.0]
    assert alert_latencies([], segments, m=3, fps=16.0) == []


@pytest.mark.parametrize(("text", "value"), [("auto", "auto"), ("0", 0), ("12", 12)])
def test_parse_warmup(text: str, value: object) -> None:
    from train.evaluation.stream import parse_warmup

    assert parse_warmup(text) == value


@pytest.mark.parametrize("text", ["-1", "x", "1.5"])
def test_parse_warmup_rejects(text: str) -> None:
    import argparse

    from train.evaluation.stream import parse_warmup

    with pytest.raises(argparse.ArgumentTypeError, match="expected 'auto' or an integer"):
        parse_warmup(text)
