"""The device loop: cameras -> CLIP encoder -> snippet features -> causal student -> smoother -> events -> sinks.

One worker (the caller of :meth:`Pipeline.run`, the main thread in ``edge/run.py``) does all the model work;
each camera has its capture threads (:class:`edge.capture.CameraCapture`), which queue only the frames that
``encode_every`` selects and wake the worker through one shared event. Per pass the worker:

1. takes up to ``runtime.clip_batch`` queued frames, round-robin over the cameras (fair under load);
2. preprocesses them and runs the CLIP image encoder once on the batch ([N,3,224,224] -> [N,512]);
3. feeds each camera's :class:`~edge.snippets.SnippetAccumulator` in frame order: frames between two delivered
   ones that ``encode_every`` skips are pushed as ``None``; a missing wanted frame (dropped by the capture
   queue) is skipped, and its snippet comes out incomplete; a new capture ``segment`` (reconnect, loop restart)
   ends the camera's stream and starts a new one; when a file ends or loops, its last frames (read, not
   delivered) are pushed too, so its last whole snippet is scored as the feature extractor has it;
4. pushes each finished snippet feature into the camera's :class:`~edge.ringbuffer.FeatureRing` and runs the
   student on the windows of all cameras that have one, as one batch (several snippets of one camera go in
   successive rounds, so every snippet sees exactly its own past);
5. reads the outputs at the newest valid row: per-level anomaly probabilities [L] and the level-mean class
   probabilities [M] -> :class:`~edge.smoother.CausalSmoother` -> :class:`~edge.events.EventTracker` -> sinks
   (4-5 are the stream contract of :mod:`edge.stream`, shared with the streaming evaluation and the INT8 gate).

Snippet indices stay aligned with the source: a snippet the device could not score (frames dropped, NaN/Inf
feature or output) steps the smoother with the stream's previous output (``held``; zeros before the first),
so event frames and times keep matching the video. NaN/Inf snippets are logged, counted and never enter the
ring. A stream ends (open events closed with ``camera_lost``) when its camera goes offline or its segment
changes (reconnect), with ``end_of_stream`` when its video file ends or loops, and with ``shutdown`` when the
loop stops; :meth:`Pipeline.close_left_open` ends (``restart``) the events a killed process left open.

Event times: a live camera's stream runs on the wall clock; a file's on its own position (the frame's position in
the file, anchored at the wall time its stream started, at the file's frame rate), so a 30 s clip processed in
0.5 s still gives a 30 s event. Each camera's smoother runs at its alert sensitivity (``camera_smoother_params``:
the bundle's defaults, then the config's ``smoother`` section, then its per-camera overrides).
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.backends import InferenceBackend, open_backend, resolve_kind
from edge.bundle import EMBED_DIM, HEAD_INPUTS, HEAD_OUTPUTS, RANDOM_CLIP_WARNING, Bundle
from edge.capture import CameraCapture, CameraSpec, CameraState, CameraStatus, CaptureOptions, Frame, parse_source
from edge.config import EdgeConfig, RuntimeConfig
from edge.events import EndReason, EventTracker, ModelInfo, StreamClock, restart_end
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME, CLIP_VIT_B16, preprocess
from edge.ringbuffer import FeatureRing
from edge.smoother import CausalSmoother, SmootherParams
from edge.snippets import Snippet, SnippetAccumulator
from edge.snapshots import Snapshotter
from edge.stream import backend_head, run_head
from edge.stats import CameraCounters, StageTimer, rate, stats_payload

log = logging.getLogger(__name__)

_ENDED = (CameraState.OFFLINE, CameraState.ENDED)


class BundleMismatch(ValueError):
    """The bundle does not fit this runtime (preprocessing, snippet policy, model interfaces)."""


# ------------------------------------------------------------------------------------------------ sinks
class EventSink(Protocol):
    """Where event messages go (MQTT through the outbox, a JSON-lines file, ...)."""

    def publish(self, camera: str, payload: dict[str, Any]) -> None: ...


class JsonlSink:
    """Appends each event as one JSON line (flushed per line, so a crash loses at most the line being written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # events are private, like the outbox
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def publish(self, camera: str, payload: dict[str, Any]) -> None:
        self._file.write(json.dumps(payload, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class StatusPublisher(Protocol):
    """The retained / periodic side of :class:`edge.mqtt.MqttPublisher` that the pipeline uses."""

    def publish_event(self, camera: str, payload: dict[str, Any]) -> int: ...

    def publish_status(self, camera: str, status: dict[str, Any] | str) -> None: ...

    def publish_state(self, camera: str, state: dict[str, Any]) -> None: ...

    def publish_stats(self, stats: dict[str, Any]) -> None: ...


class MqttSink:
    """Events through the MQTT publisher (stored in its durable outbox first)."""

    def __init__(self, publisher: StatusPublisher) -> None:
        self.publisher = publisher

    def publish(self, camera: str, payload: dict[str, Any]) -> None:
        self.publisher.publish_event(camera, payload)


# ----------------------------------------------------------------------------------- bundle and models
@dataclass(frozen=True)
class Models:
    """What the loop needs from a bundle, checked against this runtime."""

    clip: InferenceBackend
    head: InferenceBackend
    text: np.ndarray  # [L, M, 512] float32
    classes: tuple[str, ...]
    window: int
    levels: int
    encode_every: int
    smoother: SmootherParams
    info: ModelInfo
    clip_random: bool  # the bundle's CLIP weights are random (demo only)


def bundle_hash(bundle: Bundle) -> str:
    """Identity of a bundle: sha256 of its manifest (which holds every file's sha256)."""
    return "sha256:" + hashlib.sha256((Path(bundle.path) / "manifest.json").read_bytes()).hexdigest()[:16]


def check_runtime_fit(bundle: Bundle, runtime: RuntimeConfig) -> None:
    """Refuse a bundle whose preprocessing or snippet policy differ from what this runtime does.

    (``load_bundle`` already checked the bundle itself: files, hashes, classes, snippet size, schema.)
    """
    where = f"bundle {bundle.path}"
    try:
        bundle.preprocess().check_same(CLIP_VIT_B16, where=where)
    except ValueError as err:
        raise BundleMismatch(str(err)) from None
    if runtime.encode_every is not None and runtime.encode_every != bundle.encode_every:
        raise BundleMismatch(f"{where}: snippet.encode_every={bundle.encode_every} but runtime.encode_every="
                             f"{runtime.encode_every}; the features would not be those the model was trained on "
                             "(use a bundle exported for this setting, or drop runtime.encode_every)")


def backend_kind(bundle: Bundle, runtime: RuntimeConfig) -> str:
    """The backend that runs ``bundle``: ``runtime.backend``, with ``auto`` resolved to the fastest one installed
    here that keeps the most models in INT8 under ``precision: int8`` (OpenVINO, unless only ONNX Runtime's INT8
    flavours passed their gate)."""
    kind = resolve_kind(runtime.backend)
    if runtime.backend != "auto" or kind != "openvino" or runtime.precision != "int8":
        return kind
    int8 = {k: sum(_model_file(bundle, m, runtime, k)[1] == "int8" for m in ("clip_visual", "head"))
            for k in ("openvino", "onnxruntime")}
    return "openvino" if int8["openvino"] >= int8["onnxruntime"] else "onnxruntime"


def _model_file(bundle: Bundle, key: str, runtime: RuntimeConfig, kind: str) -> tuple[Path, str]:
    """The file to run for model ``key`` and its precision.

    ONNX Runtime: the float ONNX, or with ``precision: int8`` the calibrated u8s8 flavour when it passed its gate.
    OpenVINO: the same with the s8s8 flavour (Q/DQ on the matrix products' inputs, which OpenVINO folds into INT8
    kernels). TensorRT: the engine built on this device for this TensorRT version and GPU (``make engine``), best
    precision first.
    """
    onnx = bundle.file(key)
    entry = bundle.manifest.models[key]
    if kind in ("onnxruntime", "openvino"):
        if runtime.precision == "fp32":
            return onnx, entry.precision
        flavour = ((entry.int8 or {}).get("flavours") or {}).get("u8s8" if kind == "onnxruntime" else "s8s8")
        if not flavour:
            log.debug("%s: no INT8 model in the bundle (run `make calibrate`); running %s", key, entry.precision)
            return onnx, entry.precision
        if kind == "openvino" and "openvino" in flavour:  # the gate measured OpenVINO's own INT8 kernels too
            flavour = {**flavour, **flavour["openvino"], "file": flavour["file"]}
        if not flavour.get("passed"):
            log.debug("%s: INT8 failed its accuracy gate on %s (%s); running %s", key, kind, flavour.get("reason"),
                      entry.precision)
            return onnx, entry.precision
        return bundle.file(flavour["file"]), "int8"
    try:
        import tensorrt  # the Jetson's (JetPack); imported here only
    except ImportError:
        raise RuntimeError("the tensorrt backend needs TensorRT (JetPack on a Jetson) and engines built there with "
                           "`make engine`; on this machine run with --backend onnxruntime") from None
    from edge.backends.tensorrt import find_engine, gpu_info, parse_engine_name

    engine = find_engine(bundle.path, key, tensorrt.__version__, gpu_info()[1])
    if engine is None:
        raise FileNotFoundError(f"no TensorRT engine for {key} ({tensorrt.__version__}, this GPU) in {bundle.path}; "
                                f"build it on this device with `make engine` (from {onnx.name}), or run with "
                                "--backend onnxruntime")
    return engine, (parse_engine_name(engine.name) or {}).get("precision", "fp16")


def model_precisions(bundle: Bundle, runtime: RuntimeConfig) -> dict[str, str]:
    """The precision :func:`open_models` runs each model of ``bundle`` at under ``runtime`` (e.g. with
    ``precision: int8``, 'int8' only for the models whose INT8 flavour passed its gate)."""
    kind = backend_kind(bundle, runtime)
    return {key: compute_precision(_model_file(bundle, key, runtime, kind)[1], kind, runtime)
            for key in ("clip_visual", "head")}


def compute_precision(precision: str, kind: str, runtime: RuntimeConfig) -> str:
    """What a model of file precision ``precision`` computes in on backend ``kind``: OpenVINO runs float models in
    bf16 where ``runtime.openvino_precision`` (auto: the CPU) says so; other backends as the file says."""
    if kind != "openvino" or precision != "fp32":
        return precision
    from edge.backends.openvino import choose_precision, cpu_flags  # imports no openvino

    return "bf16" if choose_precision(runtime.openvino_precision, cpu_flags()) == "bf16" else precision


def _check_interface(backend: InferenceBackend, model: str, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    have_in = [s.name for s in backend.inputs]
    have_out = [s.name for s in backend.outputs]
    if sorted(have_in) != sorted(inputs) or not set(outputs) <= set(have_out):
        raise BundleMismatch(f"{model}: inputs {have_in} / outputs {have_out}; expected inputs {list(inputs)} and "
                             f"outputs {list(outputs)} (the bundle contract)")


def open_models(bundle: Bundle, runtime: RuntimeConfig) -> Models:
    """Open both models of ``bundle`` on the configured backend and check them against the contract."""
    check_runtime_fit(bundle, runtime)
    options: dict[str, Any] = {}
    kind = backend_kind(bundle, runtime)
    if kind == "onnxruntime":
        options = {"providers": tuple(runtime.providers), "threads": runtime.threads}
    elif kind == "openvino":
        options = {"precision": runtime.openvino_precision, "threads": runtime.threads,
                   "cache_dir": runtime.openvino_cache}
    clip_file, clip_precision = _model_file(bundle, "clip_visual", runtime, kind)
    head_file, head_precision = _model_file(bundle, "head", runtime, kind)
    if runtime.precision == "int8" and "fp32" in (clip_precision, head_precision):
        log.warning("--precision int8 on %s: %s runs in float (no INT8 flavour passed its gate for it; "
                    "`make calibrate`)", kind, ", ".join(k for k, p in (("clip_visual", clip_precision),
                                                                      ("head", head_precision)) if p == "fp32"))
    clip = open_backend(str(clip_file), kind=kind, **options)
    head = open_backend(str(head_file), kind=kind, **options)
    log.info("models: %s, %s (%s)", clip_file.name, head_file.name, kind)
    _check_interface(clip, "clip_visual", [CLIP_INPUT_NAME], [CLIP_OUTPUT_NAME])
    _check_interface(head, "head", HEAD_INPUTS, HEAD_OUTPUTS)
    features = next(s for s in head.inputs if s.name == "features")
    if isinstance(features.shape[1], int) and features.shape[1] != bundle.window:
        raise BundleMismatch(f"head: features window {features.shape[1]} != manifest window {bundle.window}")
    text = np.ascontiguousarray(bundle.text_embeddings, dtype=np.float32)
    if bundle.clip_is_random:  # load_bundle warned once; repeat it where the run starts
        log.warning("!!! RANDOM CLIP weights (%s): %s !!!", bundle.manifest.clip.source, RANDOM_CLIP_WARNING)
    info = ModelInfo(bundle.manifest.name, bundle.manifest.version, compute_precision(head_precision, kind, runtime),
                     bundle_hash(bundle))
    return Models(clip, head, text, tuple(bundle.classes), bundle.window, bundle.levels, bundle.encode_every,
                  bundle.smoother_params(), info, bundle.clip_is_random)


def camera_smoother_params(config: EdgeConfig, bundle: SmootherParams) -> dict[str, SmootherParams]:
    """Each configured camera's alert sensitivity: the bundle's smoother with the config's ``smoother`` section
    and the camera's own overrides; ConfigError names the keys that disagree."""
    names = [parse_source(c).name for c in config.cameras]
    return {name: config.smoother.params_for(name, bundle) for name in names}


# ---------------------------------------------------------------------------------------- one camera
class CameraStream:
    """One camera's snippet, window, smoother and event state (used by the worker thread only)."""

    def __init__(self, name: str, models: Models, device: str, next_seq: Callable[[], int], update_every: int,
                 fps_hint: Callable[[], float], smoother: SmootherParams | None = None) -> None:
        self.name = name
        self.models = models
        self.smoother_params = smoother or models.smoother
        self.device = device
        self.acc = SnippetAccumulator(models.encode_every)
        self.ring = FeatureRing(models.window, EMBED_DIM)
        self.counters = CameraCounters()
        self._next_seq = next_seq
        self._update_every = update_every
        self._fps_hint = fps_hint
        self.segment: int | None = None
        self.closed = False  # the stream ended (camera offline): frames of this segment are discarded
        self.last_index = -1
        # (wall time, index, position in the file or None) of the segment's first frame
        self._segment_start: tuple[float, int, float | None] = (0.0, 0, None)
        self.smoother: CausalSmoother | None = None
        self.tracker: EventTracker | None = None
        self._last_output: tuple[np.ndarray, np.ndarray | None] | None = None
        self.score = 0.0
        self.status: CameraStatus | None = None

    # -- frames -> snippets ----------------------------------------------------------------------------
    def add_frame(self, frame: Frame, embedding: np.ndarray) -> tuple[list[Snippet], list[dict[str, Any]]]:
        """Feed one encoded frame: (finished snippets, event messages of a stream that ended here)."""
        messages: list[dict[str, Any]] = []
        if self.segment is None or frame.segment > self.segment:
            messages = self.end("camera_lost")
            self._start_segment(frame)
        elif frame.segment < self.segment or self.closed or frame.index <= self.last_index:
            return [], messages  # a late frame of a stream that already ended
        before = self.acc.incomplete
        snippets = self.acc.skip_to(frame.index)  # frames the capture skipped (or dropped)
        snippet = self.acc.push(frame.index, embedding)
        if snippet is not None:
            snippets.append(snippet)
        self.counters.incomplete += self.acc.incomplete - before
        self.counters.frames += 1
        self.last_index = frame.index
        return snippets, messages

    def finish_file(self, frames: int) -> list[Snippet]:
        """The segment's file ended after ``frames`` frames: the snippets its last, undelivered frames finish (its
        last whole snippet when ``encode_every`` > 1; a trailing partial snippet is dropped, as in training)."""
        if self.closed or self.segment is None or frames <= self.last_index + 1:
            return []
        before = self.acc.incomplete
        snippets = self.acc.skip_to(frames)
        self.counters.incomplete += self.acc.incomplete - before
        self.last_index = frames - 1
        return snippets

    def _start_segment(self, frame: Frame) -> None:
        self.segment = frame.segment
        self.closed = False
        self.last_index = -1
        self.acc.reset()
        self.ring.reset()
        self._segment_start = (frame.timestamp, frame.index, frame.position_s)
        self._last_output = None
        self.counters.segments += 1

    # -- snippets -> window -> smoother ------------------------------------------------------------------
    def push_snippet(self, snippet: Snippet) -> bool:
        """Put a finished snippet into the window; False (logged, counted) when its feature is not finite."""
        if not np.all(np.isfinite(snippet.feature)):
            self.counters.nonfinite += 1
            log.warning("camera %s: snippet %d has NaN/Inf features; skipped (%d so far)", self.name, snippet.index,
                        self.counters.nonfinite)
            return False
        self.ring.push(snippet.feature)
        return True

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """The head's input for the newest snippet: the ring's window [W, 512] and mask [W] (valid rows first)."""
        return self.ring.window()

    def step(self, snippet_index: int, levels: np.ndarray, class_probs: np.ndarray) -> list[dict[str, Any]]:
        """Smoother + events for the head output of snippet ``snippet_index`` ([L], [M])."""
        if not (np.all(np.isfinite(levels)) and np.all(np.isfinite(class_probs))):
            self.counters.nonfinite += 1
            log.warning("camera %s: the head gave NaN/Inf at snippet %d; skipped", self.name, snippet_index)
            return []
        messages = self._hold_until(snippet_index)
        messages += self._update(levels, class_probs)
        self._last_output = (levels, class_probs)
        self.counters.snippets += 1
        return messages

    def _hold_until(self, snippet_index: int) -> list[dict[str, Any]]:
        """Step the smoother over snippets before ``snippet_index`` that got no output (see module docstring)."""
        messages: list[dict[str, Any]] = []
        done = self.smoother.index + 1 if self.smoother is not None else 0
        for _ in range(done, snippet_index):
            if self._last_output is None:
                levels, probs = np.zeros(self.models.levels), None
            else:
                levels, probs = self._last_output
            messages += self._update(levels, probs)
            self.counters.held += 1
        return messages

    def _update(self, levels: np.ndarray, class_probs: np.ndarray | None) -> list[dict[str, Any]]:
        if self.smoother is None or self.tracker is None:
            self.smoother, self.tracker = self._new_stream()
        update = self.smoother.update(levels, class_probs)
        self.score = update.score
        messages = self.tracker.step(update, self.smoother.event_class_probs())
        self.counters.events += len(messages)
        return messages

    def _new_stream(self) -> tuple[CausalSmoother, EventTracker]:
        fps = self._fps_hint()
        wall, index, position = self._segment_start
        start = datetime.fromtimestamp(wall - (index / fps if position is None else position), tz=timezone.utc)
        clock = StreamClock(fps=fps, start_time=start)
        tracker = EventTracker(self.name, self.device, self.models.classes, clock, self.models.info, self._next_seq,
                               update_every=self._update_every)
        return CausalSmoother(self.smoother_params), tracker

    def end(self, reason: EndReason) -> list[dict[str, Any]]:
        """End the stream: close an open event with ``reason``; later frames of this segment are discarded."""
        self.closed = True
        if self.smoother is None or self.tracker is None:
            return []
        update = self.smoother.close()
        messages = self.tracker.step(update, self.smoother.event_class_probs(), end_reason=reason)
        self.counters.events += len(messages)
        self.smoother = self.tracker = None
        return messages

    @property
    def active(self) -> bool:
        return self.smoother is not None and self.smoother.active

    def state(self) -> dict[str, Any]:
        """The retained ``<camera>/state`` message."""
        return {"camera": self.name, "score": round(self.score, 4), "active": self.active,
                "snippet": self.smoother.index if self.smoother is not None else None,
                "camera_state": self.status.state.value if self.status is not None else None,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}


# --------------------------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class SnippetResult:
    """One scored snippet, for observers (benchmarks, tests): what the smoother got."""

    camera: str
    index: int
    levels: np.ndarray  # [L]
    class_probs: np.ndarray  # [M]
    score: float


class Pipeline:
    """Runs the device loop over ``cameras`` until stopped; see the module docstring.

    sinks: receive every event message; publisher: gets camera status, state and stats (None: logs only);
    next_seq: camera -> its message counter (``functools.partial(outbox.next_seq, camera)`` on the device);
    smoother: camera -> its alert sensitivity (absent: the bundle's, ``models.smoother``);
    snapshots: attaches the image of the triggering frame to starts and new peaks (None: no images).
    """

    def __init__(self, models: Models, cameras: Sequence[CameraSpec], *, device: str, capture: CaptureOptions,
                 runtime: RuntimeConfig, sinks: Sequence[EventSink] = (), publisher: StatusPublisher | None = None,
                 next_seq: Callable[[str], Callable[[], int]] | None = None, update_every: int = 16,
                 stats_interval_s: float = 10.0, state_interval_s: float = 1.0,
                 on_snippet: Callable[[SnippetResult], None] | None = None,
                 smoother: Mapping[str, SmootherParams] | None = None,
                 snapshots: Snapshotter | None = None) -> None:
        if not cameras:
            raise ValueError("no camera given; expected at least one (--camera or `cameras:` in the config)")
        self.models = models
        self.device = device
        self.runtime = runtime
        self.sinks = list(sinks)
        self.publisher = publisher
        self.stats_interval_s = stats_interval_s
        self.state_interval_s = state_interval_s
        self.on_snippet = on_snippet
        self.snapshots = snapshots
        self.timer = StageTimer()
        self.wake = threading.Event()
        self._statuses: dict[str, CameraStatus] = {}
        self._status_lock = threading.Lock()
        seq = next_seq or (lambda camera: itertools.count(1).__next__)  # no outbox: numbered from 1 per run
        self._seq = seq
        self.captures: dict[str, CameraCapture] = {}
        self.streams: dict[str, CameraStream] = {}
        for spec in cameras:
            stream = CameraStream(spec.name, models, device, seq(spec.name), update_every,
                                  fps_hint=self._fps_hint(spec.name, capture.fallback_fps),
                                  smoother=(smoother or {}).get(spec.name))
            self.streams[spec.name] = stream
            self.captures[spec.name] = CameraCapture(spec, capture, wants=stream.acc.needs_encoding,
                                                     on_status=self._on_status, wake=self.wake)
        self.last_stats: dict[str, Any] = {}  # the latest stats message
        self._last_stats = time.monotonic()
        self._last_state = 0.0
        self._stats_before: dict[str, tuple[int, int]] = {n: (0, 0) for n in self.streams}

    @classmethod
    def from_config(cls, config: EdgeConfig, models: Models, **kwargs: Any) -> Pipeline:
        """A pipeline for ``config``'s cameras, capture, runtime, events, smoother and stats sections."""
        cameras = [parse_source(c) for c in config.cameras]
        return cls(models, cameras, device=config.device_name,
                   capture=config.capture, runtime=config.runtime, update_every=config.events.update_every,
                   stats_interval_s=config.stats.interval_s, state_interval_s=config.stats.state_interval_s,
                   smoother=camera_smoother_params(config, models.smoother), **kwargs)

    def _fps_hint(self, name: str, fallback: float) -> Callable[[], float]:
        """The frame rate of a camera's stream clock: a file's own, a live camera's measured one."""
        def fps() -> float:
            capture = self.captures[name]
            if capture.spec.is_file and capture.source_fps > 0:
                return capture.source_fps
            measured = capture.stats().fps
            return measured if measured > 0 else fallback
        return fps

    def close_left_open(self, open_events: Mapping[str, dict[str, Any]]) -> int:
        """End (reason ``restart``) the events a killed process left open, from their last stored messages
        (``outbox.open_events()``), before any new event; returns how many. Cameras no longer configured too."""
        for camera, last in open_events.items():
            stream = self.streams.get(camera)
            next_seq = stream._next_seq if stream is not None else self._seq(camera)
            end = restart_end(last, next_seq())
            log.warning("camera %s: event %s was left open by the previous run (killed?); ending it (restart)",
                        camera, end["event_id"][:8])
            self._emit(camera, [end])
        return len(open_events)

    # -- status (called from capture threads) -----------------------------------------------------------
    def _on_status(self, status: CameraStatus) -> None:
        with self._status_lock:
            self._statuses[status.camera] = status
        self.wake.set()
        if self.publisher is not None:
            params = self.streams[status.camera].smoother_params
            self.publisher.publish_status(status.camera, {
                "camera": status.camera, "state": status.state.value, "reason": status.reason,
                "time": datetime.fromtimestamp(status.time, timezone.utc).isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "sensitivity": {"theta_on": params.theta_on, "theta_off": params.theta_off, "m": params.m,
                                "g": params.g}})

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, exit_when_done: bool = False, max_seconds: float | None = None,
            on_tick: Callable[[], None] | None = None) -> str:
        """Process until ``stop`` is set, ``max_seconds`` pass, or (``exit_when_done``) every camera finished.

        Returns why it stopped: ``"stopped"``, ``"max_seconds"`` or ``"done"``. On the way out the captures are
        stopped and open events are closed (reason ``shutdown``); final stats are published.
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        for capture in self.captures.values():
            capture.start()
        why = "stopped"
        try:
            while not stop.is_set():
                if on_tick is not None:
                    on_tick()
                if deadline is not None and time.monotonic() >= deadline:
                    why = "max_seconds"
                    break
                self.wake.clear()
                worked = self.process_batch()
                done = exit_when_done and all(c.finished for c in self.captures.values())
                self._check_cameras()
                self._periodic()
                if done:
                    why = "done"
                    break
                if not worked:
                    self.wake.wait(0.1)
        finally:
            self._finish()
        log.info("pipeline %s", why)
        return why

    def _finish(self) -> None:
        """The batch in flight is done (the loop is synchronous); frames still queued are left: they could only
        add to unfinished snippets, and a slow model must not hold up the shutdown."""
        for capture in self.captures.values():
            capture.stop()
        for stream in self.streams.values():
            if not stream.closed:
                self._emit(stream.name, stream.end("shutdown"))
        self._publish_stats(force=True)

    def _take_frames(self) -> list[Frame]:
        """Up to ``clip_batch`` queued frames, one per camera per round (oldest first within a camera)."""
        frames: list[Frame] = []
        open_cams = list(self.captures.values())
        while open_cams and len(frames) < self.runtime.clip_batch:
            still = []
            for capture in open_cams:
                if len(frames) >= self.runtime.clip_batch:
                    break
                frame = capture.get(timeout=0)
                if frame is not None:
                    frames.append(frame)
                    still.append(capture)
            open_cams = still
        return frames

    def process_batch(self) -> bool:
        """One pass: encode a batch of frames and score the snippets they finish; False when nothing was queued."""
        frames = self._take_frames()
        if not frames:
            return False
        with self.timer.time("preprocess", len(frames)):
            pixels = preprocess([f.image for f in frames])  # [N, 3, 224, 224]
        with self.timer.time("clip", len(frames)):
            embeds = self.models.clip.run({CLIP_INPUT_NAME: pixels})[CLIP_OUTPUT_NAME]  # [N, 512]
        pending: dict[str, collections.deque[Snippet]] = {}
        for frame, embedding in zip(frames, embeds):
            stream = self.streams[frame.camera]
            if self.snapshots is not None:
                self.snapshots.note_frame(frame)  # a reference, for the alert image
            if stream.segment is not None and frame.segment > stream.segment and not stream.closed:
                # a loop restart or reconnect: the previous segment's snippets are scored before it ends
                self._end_stream(stream, "camera_lost", pending.pop(stream.name, ()))
            snippets, messages = stream.add_frame(frame, embedding)
            self._emit(stream.name, messages)
            if snippets:
                pending.setdefault(stream.name, collections.deque()).extend(snippets)
        while pending:  # round r: the r-th new snippet of every camera that has one
            batch = [(self.streams[name], queue.popleft()) for name, queue in pending.items()]
            pending = {name: queue for name, queue in pending.items() if queue}
            self._score([(stream, snippet) for stream, snippet in batch if stream.push_snippet(snippet)])
        return True

    def _score(self, batch: list[tuple[CameraStream, Snippet]]) -> None:
        """Run the head on the windows of ``batch`` (one new snippet per camera) and step their smoothers."""
        if not batch:
            return
        with self.timer.time("head", len(batch)):
            windows = [stream.window() for stream, _ in batch]
            features = np.stack([w[0] for w in windows])  # [B, W, 512]
            mask = np.stack([w[1] for w in windows])  # [B, W]
            out = run_head(backend_head(self.models.head, self.models.text), features, mask)
        all_probs = out.class_probs  # [B, M], the level mean as in inference
        for b, (stream, snippet) in enumerate(batch):
            levels, probs = out.levels[b].astype(np.float64), all_probs[b]  # [L], [M]
            with self.timer.time("smoother"):
                messages = stream.step(snippet.index, levels, probs)
            self._emit(stream.name, messages)
            if self.snapshots is not None:
                self.snapshots.note_scored(stream.name, snippet.index, stream.score, stream.active)
            if self.on_snippet is not None:
                self.on_snippet(SnippetResult(stream.name, snippet.index, levels, probs, stream.score))

    def _end_stream(self, stream: CameraStream, reason: EndReason, snippets: Iterable[Snippet] = ()) -> None:
        """Score ``snippets`` and those the end of the segment's file finishes, then end the stream (reason
        ``end_of_stream`` when its file ended or looped, ``reason`` otherwise)."""
        assert stream.segment is not None
        frames = self.captures[stream.name].segment_length(stream.segment)
        for snippet in [*snippets, *(stream.finish_file(frames) if frames is not None else ())]:
            if stream.push_snippet(snippet):
                self._score([(stream, snippet)])
        self._emit(stream.name, stream.end("end_of_stream" if frames is not None else reason))

    def _emit(self, camera: str, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            log.info("camera %s: event %s %s %s score %.3f frames %s-%s", camera, message["type"],
                     message["category"], message["event_id"][:8], message["score"], message["frame_start"],
                     message["frame_end"] if message["frame_end"] is not None else "")
            with self.timer.time("publish"):  # the alert image too
                if self.snapshots is not None:
                    self.snapshots.attach(camera, message)
                for sink in self.sinks:
                    try:
                        sink.publish(camera, message)
                    except Exception:  # one broken sink must not stop detection or the other sinks
                        log.exception("camera %s: sink %s failed", camera, type(sink).__name__)
            stream = self.streams.get(camera)
            if message["type"] != "update" and self.publisher is not None and stream is not None \
                    and stream.segment is not None:  # the retained state follows a start / end at once
                self.publisher.publish_state(camera, stream.state())

    def _check_cameras(self) -> None:
        """End the stream of a camera that went offline (its open event closes as ``camera_lost``) or whose file
        ended (``end_of_stream``)."""
        with self._status_lock:
            statuses = dict(self._statuses)
        for name, status in statuses.items():
            stream = self.streams[name]
            stream.status = status
            if status.state in _ENDED and not stream.closed and stream.segment is not None:
                if self.captures[name].finished or status.state is CameraState.OFFLINE:
                    self._end_stream(stream, "camera_lost")

    # -- periodic messages --------------------------------------------------------------------------------
    def _periodic(self) -> None:
        now = time.monotonic()
        if self.publisher is not None and now - self._last_state >= self.state_interval_s:
            self._last_state = now
            for stream in self.streams.values():
                if stream.segment is not None:
                    self.publisher.publish_state(stream.name, stream.state())
        self._publish_stats()

    def _publish_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._last_stats
        if not force and elapsed < self.stats_interval_s:
            return
        self._last_stats = now
        stats = self.last_stats = self.stats(elapsed)
        summary = ", ".join(f"{n} {c['fps']:.1f} fps" for n, c in stats["cameras"].items())
        stages = ", ".join(f"{n} {s['ms_per_item']:.1f}" for n, s in stats["stages"].items() if s["calls"])
        log.info("stats: %s; ms per item: %s", summary, stages or "-")
        if self.publisher is not None:
            self.publisher.publish_stats(stats)

    def stats(self, elapsed: float) -> dict[str, Any]:
        """The stats message for the interval that just ended (resets the stage timer)."""
        cameras = {}
        for name, stream in self.streams.items():
            cap, c = self.captures[name].stats(), stream.counters
            frames_before, snippets_before = self._stats_before[name]
            self._stats_before[name] = (c.frames, c.snippets)
            cameras[name] = {
                "state": cap.state.value, "fps": round(rate(c.frames, frames_before, elapsed), 2),
                "snippets_per_s": round(rate(c.snippets, snippets_before, elapsed), 3),
                "source_fps": round(cap.fps, 2), "frames_read": cap.frames_read, "frames_encoded": c.frames,
                "dropped": cap.dropped, "corrupt": cap.corrupt, "reconnects": cap.reconnects,
                "snippets": c.snippets, "incomplete": c.incomplete, "nonfinite": c.nonfinite, "held": c.held,
                "events": c.events, "score": round(stream.score, 4), "active": stream.active,
            }
        outbox = getattr(self.publisher, "outbox", None)
        return stats_payload(device=self.device, interval_s=elapsed, stages=self.timer.snapshot(), cameras=cameras,
                             outbox_depth=outbox.depth() if outbox is not None else None,
                             outbox_dropped=outbox.dropped() if outbox is not None else None,
                             model={**self.models.info.as_dict(), "clip_random": self.models.clip_random})

