"""The device loop on a real small bundle and real video: streaming equals offline, batching, gaps, NaN, stats.

The bundle is built from tiny random models by :func:`build_tiny_bundle` (through
``train.export.bundle.build_random_bundle``: the CLIP export, ``export_head`` and ``edge.bundle.write_manifest``) and
cached under pytest's cache folder, keyed by the sources it depends on, so only the first run pays for the exports.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from showcase.scenes import read_video
from train.export.bundle import build_random_bundle
from edge.bundle import load_bundle
from edge.capture import CaptureOptions, Frame, parse_source
from edge.config import EdgeConfig, RuntimeConfig
from edge.events import event_schema
from edge.pipeline import BundleMismatch, CameraStream, JsonlSink, Models, Pipeline, SnippetResult, \
    check_runtime_fit, open_models
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME, preprocess
from edge.smoother import SmootherParams
from edge.snippets import encoded_frame_indices, snippet_features
from edge.stats import StageStats, StageTimer, rate, stats_payload

ROOT = Path(__file__).resolve().parents[1]
WINDOW, LEVELS, ENCODE_EVERY = 16, 3, 4
CLASSES = ("Normal", "Abuse", "Fighting", "Robbery")
SMOOTHER = SmootherParams(theta_on=0.5, theta_off=0.5, m=2, g=2)
_SOURCES = ("train/models/student.py", "train/export/bundle.py", "train/export/clip.py", "train/models/clip_visual.py", "edge/bundle.py",
            "bench/edge_fps.py", "tests/test_pipeline.py")


def build_tiny_bundle(out: Path) -> Path:
    """Tiny CLIP and a tiny causal student with random weights; the head's prior anomaly probability is 0.9, so
    the smoother opens events on any video."""
    from train.models.student import StudentConfig

    student = StudentConfig.tiny(window=WINDOW, num_levels=LEVELS, prior_prob=0.9)
    return build_random_bundle(out, clip="tiny", student=student, classes=CLASSES, encode_every=ENCODE_EVERY,
                               smoother=SMOOTHER)


def tiny_bundle_path(cache_dir: Path) -> Path:
    """The cached tiny bundle, built once per version of the sources it depends on (a lock serialises concurrent
    test runs; old versions are left for `make clean`, since another run may still use them)."""
    key = hashlib.sha256(b"".join((ROOT / s).read_bytes() for s in _SOURCES)).hexdigest()[:12]
    path = cache_dir / f"tiny-bundle-{key}"
    with open(cache_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "manifest.json").is_file():
            tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix="building-"))
            build_tiny_bundle(tmp)
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


@pytest.fixture(scope="session")
def models(tiny_bundle: Path) -> Models:
    return open_models(load_bundle(tiny_bundle), RuntimeConfig(threads=1))


@pytest.fixture(scope="session")
def video(scene_video: Path) -> Path:
    return scene_video  # 377 frames, 12.5 fps -> 23 snippets


def offline_levels(models: Models, video: Path) -> tuple[np.ndarray, np.ndarray]:
    """The same numbers computed offline: every frame decoded, snippet means, one head run per snippet."""
    frames = read_video(video)
    indices = encoded_frame_indices(len(frames), ENCODE_EVERY)
    embeds = models.clip.run({CLIP_INPUT_NAME: preprocess([frames[i] for i in indices])})[CLIP_OUTPUT_NAME]
    feats = snippet_features(embeds, ENCODE_EVERY)  # [T, 512]
    levels, probs = [], []
    for t in range(len(feats)):
        window = feats[max(0, t + 1 - WINDOW): t + 1]  # the last W snippets, valid rows first
        x = np.zeros((1, WINDOW, 512), np.float32)
        x[0, :len(window)] = window
        mask = (np.arange(WINDOW) < len(window))[None]
        out = models.head.run({"features": x, "mask": mask, "text": models.text})
        levels.append(out["binary"][0, :, len(window) - 1])
        probs.append(out["classes"][0, :, len(window) - 1].mean(axis=0))
    return np.array(levels), np.array(probs)


def test_streaming_equals_offline_on_two_cameras(models: Models, video: Path, tmp_path: Path) -> None:
    results: list[SnippetResult] = []
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    pipeline = Pipeline(models, [parse_source(f"a={video}"), parse_source(f"b={video}")], device="test",
                        capture=CaptureOptions(realtime=False, queue_size=4),
                        runtime=RuntimeConfig(clip_batch=6), sinks=[jsonl], on_snippet=results.append)
    assert pipeline.run(threading.Event(), exit_when_done=True, max_seconds=60) == "done"
    jsonl.close()

    levels, probs = offline_levels(models, video)
    for camera in ("a", "b"):
        mine = [r for r in results if r.camera == camera]
        assert [r.index for r in mine] == list(range(len(levels))) == list(range(377 // 16))
        np.testing.assert_allclose(np.array([r.levels for r in mine]), levels, atol=1e-4)
        np.testing.assert_allclose(np.array([r.class_probs for r in mine]), probs, atol=1e-4)
        counters = pipeline.streams[camera].counters
        assert (counters.incomplete, counters.nonfinite, counters.held) == (0, 0, 0)

    # the tiny head's prior (0.9) keeps every snippet over theta_on: one event per camera, from snippet 0,
    # opened after m snippets, closed at the end of the file (end_of_stream)
    messages = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    validator = jsonschema.Draft202012Validator(event_schema())
    for message in messages:
        validator.validate(message)
    for camera in ("a", "b"):
        mine = [m for m in messages if m["camera"] == camera]
        assert [m["type"] for m in mine][0] == "start" and mine[-1]["type"] == "end"
        assert mine[-1]["reason"] == "end_of_stream" and mine[0]["frame_start"] == 0
        assert mine[-1]["frame_end"] == 16 * len(levels) - 1
        assert [m["seq"] for m in mine] == list(range(1, len(mine) + 1))
        assert mine[0]["model"]["version"] == "random-0"

    stats = pipeline.stats(1.0)
    assert stats["cameras"]["a"]["snippets"] == len(levels) and stats["model"]["clip_random"] is True
    assert stats["stages"]["clip"]["items"] == 0  # the final stats of the run reset the interval


def _cut(video: Path, out: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``video`` as a new file (mp4v)."""
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    for _ in range(frames):
        ok, image = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, image.shape[1::-1])
        writer.write(image)
    cap.release()
    assert writer is not None
    writer.release()
    return out


def test_a_file_ending_on_skipped_frames_keeps_its_last_snippet(models: Models, video: Path, tmp_path: Path) -> None:
    """96 frames = 6 whole snippets; with encode_every 4 frames 93..95 are never delivered, yet snippet 5 is
    scored (as the feature extractor has it), at the end of the file and at each loop restart."""
    path = _cut(video, tmp_path / "six.mp4", 96)
    levels, probs = offline_levels(models, path)
    assert len(levels) == 6
    ended: list[SnippetResult] = []
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    pipeline = Pipeline(models, [parse_source(f"a={path}")], device="test", sinks=[jsonl],
                        capture=CaptureOptions(realtime=False, queue_size=4), runtime=RuntimeConfig(clip_batch=5),
                        on_snippet=ended.append)
    assert pipeline.run(threading.Event(), exit_when_done=True, max_seconds=60) == "done"
    jsonl.close()
    assert [r.index for r in ended] == list(range(6))
    np.testing.assert_allclose(np.array([r.levels for r in ended]), levels, atol=1e-4)
    np.testing.assert_allclose(np.array([r.class_probs for r in ended]), probs, atol=1e-4)
    assert pipeline.streams["a"].counters.incomplete == 0
    end = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()][-1]
    assert (end["type"], end["reason"], end["frame_end"]) == ("end", "end_of_stream", 95)

    looped: list[SnippetResult] = []
    stop = threading.Event()

    def collect(result: SnippetResult) -> None:
        looped.append(result)
        if len(looped) >= 13:
            stop.set()

    pipeline = Pipeline(models, [parse_source(f"a={path}")], device="test", on_snippet=collect,
                        capture=CaptureOptions(realtime=False, loop=True, queue_size=4),
                        runtime=RuntimeConfig(clip_batch=5))
    pipeline.run(stop, max_seconds=60)
    assert [r.index for r in looped[:13]] == [*range(6), *range(6), 0]  # each pass: its own snippets 0..5
    np.testing.assert_allclose(np.array([r.levels for r in looped[6:12]]), levels, atol=1e-4)
    assert pipeline.streams["a"].counters.incomplete == 0


def test_finish_file_drops_a_trailing_partial_snippet(models: Models) -> None:
    stream = CameraStream("cam", models, "dev", iter(range(1, 100)).__next__, 16, fps_hint=lambda: 25.0)
    assert [s.index for s in _feed(stream, list(range(0, 96, ENCODE_EVERY)))] == [0, 1, 2, 3, 4]
    assert [s.index for s in stream.finish_file(96)] == [5]
    partial = CameraStream("cam", models, "dev", iter(range(1, 100)).__next__, 16, fps_hint=lambda: 25.0)
    assert [s.index for s in _feed(partial, list(range(0, 90, ENCODE_EVERY)))] == [0, 1, 2, 3, 4]
    assert partial.finish_file(90) == [] and partial.counters.incomplete == 0  # 90 frames: 5 snippets


def _frame(index: int, segment: int = 0) -> Frame:
    return Frame("cam", index, segment, 1000.0 + index / 25, np.zeros((4, 4, 3), np.uint8))


def _feed(stream: CameraStream, indices: list[int], segment: int = 0, bad: int | None = None) -> list:
    """Frames (wanted ones only, as the capture delivers them) with constant embeddings -> snippets."""
    snippets = []
    for i in indices:
        emb = np.full(512, np.nan if i == bad else 0.1, np.float32)
        new, _ = stream.add_frame(_frame(i, segment), emb)
        snippets += new
    return snippets


def test_gaps_and_nonfinite_snippets_hold_the_smoother_in_step(models: Models) -> None:
    stream = CameraStream("cam", models, "dev", iter(range(1, 100)).__next__, 16, fps_hint=lambda: 25.0)
    wanted = [i for i in range(6 * 16) if i % ENCODE_EVERY == 0]
    dropped = 16 + 4  # a wanted frame of snippet 1 lost by the capture queue
    snippets = _feed(stream, [i for i in wanted if i != dropped], bad=3 * 16 + 8)  # snippet 3: NaN embedding
    # snippet 5 ends with frames 84..95 not yet seen (no later frame delivered): 0, 2, 3, 4 come out
    assert [s.index for s in snippets] == [0, 2, 3, 4]
    assert stream.counters.incomplete == 1
    kept = [s for s in snippets if stream.push_snippet(s)]
    assert [s.index for s in kept] == [0, 2, 4] and stream.counters.nonfinite == 1 and len(stream.ring) == 3
    levels, probs = np.full(LEVELS, 0.8), np.full(len(CLASSES), 1 / len(CLASSES))
    for s in kept:
        stream.step(s.index, levels, probs)
    assert stream.smoother is not None and stream.smoother.index == 4  # snippets 1 and 3 were held
    assert stream.counters.held == 2 and stream.counters.snippets == 3
    # a NaN head output is skipped too
    assert stream.step(5, np.full(LEVELS, np.nan), probs) == [] and stream.counters.nonfinite == 2


def test_new_segment_ends_the_stream_and_restarts_snippets(models: Models) -> None:
    stream = CameraStream("cam", models, "dev", iter(range(1, 100)).__next__, 16, fps_hint=lambda: 25.0)
    levels, probs = np.full(LEVELS, 0.9), np.full(len(CLASSES), 1 / len(CLASSES))
    for s in _feed(stream, list(range(0, 80, ENCODE_EVERY))):
        assert stream.push_snippet(s)
        stream.step(s.index, levels, probs)
    assert stream.active  # m = 2 snippets over theta_on
    new, messages = stream.add_frame(_frame(0, segment=1), np.zeros(512, np.float32))
    assert new == [] and [m["type"] for m in messages] == ["end"] and messages[0]["reason"] == "camera_lost"
    assert len(stream.ring) == 0 and stream.smoother is None and stream.counters.segments == 2
    # a late frame of the old segment is discarded
    assert stream.add_frame(_frame(84, segment=0), np.zeros(512, np.float32)) == ([], [])


def test_clock_is_back_dated_to_frame_zero(models: Models) -> None:
    stream = CameraStream("cam", models, "dev", iter(range(1, 100)).__next__, 16, fps_hint=lambda: 25.0)
    stream.add_frame(_frame(8), np.zeros(512, np.float32))  # the segment's first delivered frame is frame 8
    levels, probs = np.full(LEVELS, 0.9), np.full(len(CLASSES), 0.25)
    messages = stream.step(0, levels, probs) + stream.step(1, levels, probs)
    start = messages[0]
    assert start["type"] == "start" and start["frame_start"] == 0
    expected = datetime.fromtimestamp(1000.0 + 8 / 25 - 8 / 25, tz=timezone.utc)
    assert start["start_time"] == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _noise_video(path: Path, frames: int, fps: float) -> Path:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def test_file_events_run_on_the_files_own_time_and_end_with_end_of_stream(models: Models, tmp_path: Path) -> None:
    """A 12 s file (96 frames at 8 fps) read as fast as it decodes: its one event lasts 12 s of the file, anchored
    at the wall time the stream started, and ends with end_of_stream."""
    path = _noise_video(tmp_path / "clip.mp4", frames=96, fps=8.0)
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    began = datetime.now(timezone.utc)
    pipeline = Pipeline(models, [parse_source(f"a={path}")], device="test", sinks=[jsonl],
                        capture=CaptureOptions(realtime=False, queue_size=4), runtime=RuntimeConfig(clip_batch=5))
    assert pipeline.run(threading.Event(), exit_when_done=True, max_seconds=60) == "done"
    jsonl.close()
    took = (datetime.now(timezone.utc) - began).total_seconds()
    messages = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [m["type"] for m in messages][::len(messages) - 1] == ["start", "end"]
    start, end = messages[0], messages[-1]
    assert (end["reason"], end["frame_start"], end["frame_end"]) == ("end_of_stream", 0, 95)

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert (at(end["end_time"]) - at(end["start_time"])).total_seconds() == pytest.approx(12.0, abs=1e-3)
    assert (at(start["detected_time"]) - at(start["start_time"])).total_seconds() == pytest.approx(
        (start["frame_detected"] + 1) / 8.0, abs=1e-3)
    assert abs((at(start["start_time"]) - began).total_seconds()) < took + 1  # anchored at the stream's start
    assert pipeline.captures["a"].source_fps == 8.0


class _Statuses:
    """Records what the pipeline publishes as retained camera status (the rest is dropped)."""

    def __init__(self) -> None:
        self.status: dict[str, list[dict]] = {}

    def publish_event(self, camera: str, payload: dict) -> int:
        return 0

    def publish_status(self, camera: str, status: dict) -> None:
        self.status.setdefault(camera, []).append(status)

    def publish_state(self, camera: str, state: dict) -> None:
        pass

    def publish_stats(self, stats: dict) -> None:
        pass


def test_per_camera_sensitivity_overrides_the_bundle_and_is_in_the_status(models: Models, tmp_path: Path) -> None:
    """Two cameras on one file: 'quiet' needs scores >= 0.999 (the tiny head gives ~0.9): no event there."""
    path = _noise_video(tmp_path / "clip.mp4", frames=96, fps=8.0)
    config = EdgeConfig.model_validate({
        "cameras": [f"busy={path}", f"quiet={path}"], "device": "test",
        "capture": {"realtime": False, "queue_size": 4}, "runtime": {"clip_batch": 5},
        "smoother": {"g": 3, "cameras": {"quiet": {"theta_on": 0.999, "theta_off": 0.99}}}})
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    statuses = _Statuses()
    pipeline = Pipeline.from_config(config, models, sinks=[jsonl], publisher=statuses)
    assert pipeline.run(threading.Event(), exit_when_done=True, max_seconds=60) == "done"
    jsonl.close()
    messages = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {m["camera"] for m in messages} == {"busy"}
    assert statuses.status["busy"][-1]["sensitivity"] == {"theta_on": 0.5, "theta_off": 0.5, "m": 2, "g": 3}
    assert statuses.status["quiet"][-1]["sensitivity"] == {"theta_on": 0.999, "theta_off": 0.99, "m": 2, "g": 3}
    assert pipeline.streams["quiet"].smoother_params.aggregation == SMOOTHER.aggregation  # the rest: the bundle's


def test_runtime_refuses_a_different_snippet_policy_or_preprocessing(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    check_runtime_fit(bundle, RuntimeConfig(encode_every=ENCODE_EVERY))
    with pytest.raises(BundleMismatch, match="encode_every=4 but runtime.encode_every=2"):
        check_runtime_fit(bundle, RuntimeConfig(encode_every=2))
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocess"]["downscale"] = "linear"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleMismatch, match="downscale: 'linear' != 'area'"):
        check_runtime_fit(load_bundle(copy), RuntimeConfig())


def test_tensorrt_backend_without_engines_says_how_to_build_them(tiny_bundle: Path) -> None:
    # without TensorRT: says what it needs; with it but no engine: says to build one (both name `make engine`)
    with pytest.raises((RuntimeError, FileNotFoundError), match="make engine"):
        open_models(load_bundle(tiny_bundle), RuntimeConfig(backend="tensorrt"))


def test_stage_stats_by_hand() -> None:
    s = StageStats()
    s.add(0.010, items=4)
    s.add(0.030, items=4)
    assert (s.calls, s.items) == (2, 8)
    assert s.ms_per_call == pytest.approx(20.0) and s.ms_per_item == pytest.approx(5.0)
    assert s.as_dict()["ms_max"] == pytest.approx(30.0)
    assert StageStats().ms_per_call == 0.0 and rate(30, 10, 4.0) == 5.0 and rate(3, 1, 0.0) == 0.0
    timer = StageTimer()
    timer.add("head", 0.002)
    with pytest.raises(KeyError, match="unknown stage 'gpu'"):
        timer.add("gpu", 1.0)
    assert timer.totals()["head"] == pytest.approx(0.002) and timer.totals()["head"] == pytest.approx(0.002)
    first, second = timer.snapshot(), timer.snapshot()
    assert first["head"].calls == 1 and second["head"].calls == 0 and timer.totals()["head"] == 0.0
    payload = stats_payload(device="d", interval_s=2.0, stages=first, cameras={"a": {"fps": 1.0}},
                            outbox_depth=3, outbox_dropped=0)
    assert payload["stages"]["head"]["ms_per_call"] == pytest.approx(2.0)
    assert payload["outbox"] == {"depth": 3, "dropped": 0} and json.dumps(payload)
