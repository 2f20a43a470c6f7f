"""Evaluate the student as the device runs it, beside the teacher and the student run offline.

    cplvad eval --run STUDENT_RUN [--data DIR] [--batch 256] [--warmup auto|N] [--threshold-quantile Q]
        [--int8 u8s8|s8s8]

Three rows on the test set (four with ``--int8``), scored with the same metrics
(``train.evaluation.metrics.evaluate_scores``):

  teacher            ``CPLVAD.predict_video``: whole video in chunks, sigmoid / softmax of the level means
  student offline    the student on the video cut into consecutive W-snippet windows
  student streaming  the device's loop: a ``FeatureRing`` of W; for every new snippet the student runs on the
                     window and the outputs of the newest valid row go to the ``CausalSmoother``
  student INT8 streaming  the same loop on the INT8 head the device runs on a CPU (``--int8 u8s8``, ONNX Runtime) or
                     builds TensorRT from (``s8s8``): exported as ``cplvad export`` does (``train.export.head``),
                     quantized as ``cplvad calibrate --data`` does it, on the run's training features; same smoother

The student's per-snippet anomaly score is the device's (``edge.stream``: the smoother's level aggregation,
``SmootherParams.score``, the score the device thresholds), offline too, so the rows differ only in what the model
sees; its class probabilities are the mean of the per-level ones. The streaming row also reports the smoother's
events (``edge.stream.smooth`` with the smoother the bundle carries: threshold and warm-up from the normal
training videos, :func:`calibrated_smoother`) as frame-level precision / recall / F1, counts its false alarms
(events that overlap no anomalous frame) per hour of normal video, with and without the warm-up, and the alert
latency of the anomalous segments it caught. The streaming
windows of a video are batched (``edge.stream.stream_outputs``), which equals the one-snippet-at-a-time loop
(tested). Results go into
``STUDENT_RUN/metrics.json`` (``teacher``, ``student_offline``, ``student_streaming``, ``student_int8_streaming``)
and a printed table.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge import car
from edge.configfile import load_config, run_main
from edge.ringbuffer import FeatureRing
from edge.smoother import SmootherParams
from edge.stream import HeadFn, SnippetOutputs, backend_head, smooth, stream_outputs
from train.data.release import FRAMES_PER_SNIPPET, GroundTruth, chunk, load_ground_truth, load_split, unchunk
from train.training.distill_config import DistillConfig
from train.evaluation.metrics import evaluate_scores
from train.models.cplvad import CPLVAD
from train.models.student import Student
from train.models.text import load_text_embeddings

log = logging.getLogger(__name__)


StudentOutputs = SnippetOutputs  # one video's outputs, one row per snippet: levels [N, L], classes [N, L, M]


def smoother_params(dataset: str, warmup: int = 0) -> SmootherParams:
    """The device's smoother: the causal form of the dataset's CAR refinement of the binary branch, no event
    starting in a stream's first ``warmup`` snippets (the export writes the same value into the manifest)."""
    return replace(SmootherParams.from_car(car.CarParams.for_dataset(dataset, "binary")), warmup=warmup)


Warmup = int | str  # snippets, or WARMUP_AUTO
WARMUP_AUTO = "auto"
SOURCE_FPS = {"ucf": 30.0, "xd": 24.0}  # the datasets' frame rates (UCF-Crime 30 fps, XD-Violence 24 fps)


def parse_warmup(text: str) -> Warmup:
    """``auto`` or a number of snippets >= 0 (argparse type)."""
    if text == WARMUP_AUTO:
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'auto' or an integer >= 0 (snippets)")
    return value


def auto_warmup(normal_scores: Sequence[np.ndarray], theta: float, window: int, z: float = 2.0) -> int:
    """The smallest warm-up k in 0..window after which a stream's young snippets (positions k..window-1, before
    the ring buffer is full) reach ``theta`` no more often than settled ones (positions >= window) of the same
    normal videos: the young rate must be within ``z`` binomial standard errors of the settled rate. 0 without
    settled snippets (no evidence)."""
    young_hits, young_n = np.zeros(window), np.zeros(window)
    settled_hits = settled_n = 0
    for scores in normal_scores:
        over = np.asarray(scores) >= theta
        n = min(len(over), window)
        young_hits[:n] += over[:n]
        young_n[:n] += 1
        settled_hits += int(over[window:].sum())
        settled_n += max(len(over) - window, 0)
    if settled_n == 0:
        return 0
    rate = settled_hits / settled_n
    hits, counts = np.cumsum(young_hits[::-1])[::-1], np.cumsum(young_n[::-1])[::-1]  # sums over k..window-1
    for k in range(window):
        if counts[k] == 0 or hits[k] / counts[k] <= rate + z * np.sqrt(max(rate * (1 - rate), 1e-12) / counts[k]):
            return k
    return window


def calibrated_smoother(student: Student | None, text: np.ndarray, data: str | None, feature_root: str | None,
                        dataset: str, quantile: float, warmup: Warmup = 0) -> tuple[SmootherParams, dict]:
    """The device's smoother for this student: the dataset's CAR smoother with its threshold set for a
    false-alarm budget on normal footage, and its warm-up.

    theta_on = theta_off = the ``quantile`` of the student's streaming scores over every snippet of the normal
    training videos (crop 0), so about 1 - quantile of normal snippets reach it; m and g stay the CAR defaults.
    A student's absolute scores depend on its training (top-k MIL keeps them low), a fixed 0.5 does not.
    ``quantile`` 0, or no normal training video: the CAR default. ``warmup``: snippets, or ``auto``
    (:func:`auto_warmup` on the same videos; 0 where they are unavailable). Export and evaluation both call this.
    """
    params = smoother_params(dataset, warmup if isinstance(warmup, int) else 0)
    default = {"source": "car default", "warmup": params.warmup}
    if quantile <= 0 and warmup != WARMUP_AUTO:
        return params, default
    try:
        split = load_split(str(data), "train", dataset, feature_root)
    except (FileNotFoundError, ValueError, TypeError) as err:
        log.warning("training features unavailable (%s): keeping the default threshold %.2f and warm-up %d", err,
                    params.theta_on, params.warmup)
        return params, default
    embeddings = torch.from_numpy(text)
    scores = [snippet_scores(stream_batched(student, v.load(0), embeddings), params)[0]
              for v in split.videos if v.primary == 0]
    if not scores:
        return params, default
    info: dict = default
    if quantile > 0:
        theta = float(np.clip(np.quantile(np.concatenate(scores), quantile), 1e-3, 1.0))
        log.info("smoother threshold %.3f: the %.3f quantile of the student's scores on %d normal training videos "
                 "(default %.2f)", theta, quantile, len(scores), params.theta_on)
        info = {"source": "normal training videos", "quantile": quantile, "videos": len(scores),
                "default": params.theta_on}
        params = replace(params, theta_on=theta, theta_off=theta)
    if warmup == WARMUP_AUTO:
        params = replace(params, warmup=auto_warmup(scores, params.theta_on, student.config.window))
        log.info("smoother warm-up %d snippets (auto: young snippets of %d normal training videos reach the "
                 "threshold no more often than settled ones)", params.warmup, len(scores))
        info = info | {"warmup_source": "auto"}
    return params, info | {"warmup": params.warmup}


# ----------------------------------------------------------------------------------------------- windows


def student_head(student: Student, text: torch.Tensor) -> HeadFn:
    """The student as the device's head (numpy windows in, probabilities out), on ``text``'s device."""
    @torch.no_grad()
    def head(features: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, c = student(torch.from_numpy(features).to(text.device), torch.from_numpy(mask).to(text.device), text)
        return b.cpu().numpy(), c.cpu().numpy()  # (B, L, W), (B, L, W, M)
    return head


def stream_batched(student: Student, features: np.ndarray, text: torch.Tensor, batch: int = 256
                   ) -> StudentOutputs:
    """The streaming outputs of a video [N, 512]: ``edge.stream.stream_outputs``, ``batch`` windows per call."""
    return stream_outputs(student_head(student, text), features, student.config.window, batch)


def int8_head(run: Path, text: np.ndarray, data: str | Path, feature_root: str | None, dataset: str,
              flavour: str, threads: int | None = None) -> HeadFn:
    """The run's student as the device's INT8 head: ``RUN/int8/head.onnx`` (the bundle's export) and
    ``RUN/int8/head.<flavour>.onnx``, calibrated as ``cplvad calibrate`` does on the training videos' windows,
    run by ONNX Runtime on the CPU."""
    from calibration.calibrate import CalibrateConfig, quantize_head  # only when asked: quantization is heavy
    from calibration.dataset import feature_sequences
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from train.export.head import export_head

    student, _ = Student.load_run(run, "cpu")
    folder = run / "int8"
    float_path = export_head(student, text, folder / "head.onnx")
    target = folder / f"head.{flavour}.onnx"
    sequences = feature_sequences(data, split="train", feature_root=feature_root, dataset=dataset)
    quantize_head(float_path, target, sequences, text, student.config.window, CalibrateConfig(), flavour)
    return backend_head(OnnxRuntimeBackend(target, threads=threads), text)


@torch.no_grad()
def stream_loop(student: Student, features: np.ndarray, text: torch.Tensor) -> StudentOutputs:
    """The device's loop, one snippet at a time: push into the ring, run the window, read the newest row."""
    ring = FeatureRing(student.config.window, features.shape[1])
    device = text.device
    levels, classes = [], []
    for feature in features:
        ring.push(feature)
        x, mask = ring.window()
        b, c = student(torch.from_numpy(x)[None].to(device), torch.from_numpy(mask)[None].to(device), text)
        row = ring.newest_row
        levels.append(b[0, :, row].cpu().numpy())
        classes.append(c[0, :, row].cpu().numpy())
    return StudentOutputs(np.stack(levels), np.stack(classes))


@torch.no_grad()
def offline(student: Student, features: np.ndarray, text: torch.Tensor) -> StudentOutputs:
    """The student on the video cut into consecutive windows of W (the last one zero-padded)."""
    x, mask = chunk(features, student.config.window)  # (K, W, 512), (K, W)
    b, c = student(torch.from_numpy(x).to(text.device), torch.from_numpy(mask).to(text.device), text)
    n = features.shape[0]
    return StudentOutputs(unchunk(b.transpose(1, 2).cpu().numpy(), n),  # (K, W, L) -> (N, L)
                          unchunk(c.transpose(1, 2).cpu().numpy(), n))  # (K, W, L, M) -> (N, L, M)


# ----------------------------------------------------------------------------------------------- scores


def snippet_scores(outputs: StudentOutputs, params: SmootherParams) -> tuple[np.ndarray, np.ndarray]:
    """(anomaly score [N]: the device's score after each snippet, class probabilities [N, M]: mean over levels)."""
    return outputs.scores(params), outputs.class_probs


def alert_latencies(events: list[car.Run], segments: np.ndarray, m: int, fps: float) -> list[float]:
    """Seconds from each anomalous segment's first frame to its alert, for the segments an event overlaps.

    The alert goes out when the event opens: at the end of snippet ``start + m - 1`` of an event whose first
    snippet over the threshold is ``start`` (the smoother waits m snippets; a dip inside them is not counted).
    An event that opened before the segment began gives 0. ``segments``: [S, 2] frames (start, end)."""
    out = []
    for first, last in np.asarray(segments, dtype=np.float64).reshape(-1, 2):
        hits = [start for start, end in events
                if start * FRAMES_PER_SNIPPET < last and (end + 1) * FRAMES_PER_SNIPPET > first]
        if hits:
            alert_frame = (min(hits) + m) * FRAMES_PER_SNIPPET
            out.append(max(alert_frame - first, 0.0) / fps)
    return out


def event_frame_scores(events: dict[str, list[car.Run]], truth: GroundTruth, m: int = 1) -> dict[str, float]:
    """Frame-level precision / recall / F1 of the smoother's events against the ground truth, the number of
    events and of false alarms (events that overlap no anomalous frame), false alarms per hour of normal
    frames, and the alert latency over the anomalous segments an event caught (:func:`alert_latencies`)."""
    pred = np.concatenate([np.repeat(car.runs_to_mask(events[name], n), FRAMES_PER_SNIPPET)
                           for name, n in zip(truth.names, truth.num_snippets)]) > 0
    gt = truth.gt_frames > 0.5
    tp, fp, fn = int((pred & gt).sum()), int((pred & ~gt).sum()), int((~pred & gt).sum())
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    fps = SOURCE_FPS.get(truth.label_map.dataset, 30.0)
    false_alarms, latencies, segments = 0, [], 0
    for i, name in enumerate(truth.names):
        snippet_gt = truth.frames_of(i).reshape(-1, FRAMES_PER_SNIPPET).max(axis=1) > 0.5  # [T]
        false_alarms += sum(not snippet_gt[start:end + 1].any() for start, end in events[name])
        if snippet_gt.any():
            anomalous = [seg for seg, code in zip(truth.segments[i], truth.seg_labels[i])
                         if code not in ("A", truth.label_map.codes[0])]  # 'A': the files' normal code
            segments += len(anomalous)
            latencies += alert_latencies(events[name], np.asarray(anomalous).reshape(-1, 2), m, fps)
    normal_hours = float((~gt).sum()) / fps / 3600
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-12),
            "events": int(sum(len(e) for e in events.values())), "false_alarms": int(false_alarms),
            "normal_hours": normal_hours, "false_alarms_per_hour": false_alarms / max(normal_hours, 1e-9),
            "segments": segments, "segments_alerted": len(latencies),
            "latency_s_mean": float(np.mean(latencies)) if latencies else None,
            "latency_s_median": float(np.median(latencies)) if latencies else None}


def format_table(rows: dict[str, dict]) -> str:
    lines = [f"{'':<20}{'AUC':>8}{'AP':>8}{'mAP':>8}{'mAP*':>8}   (mAP* = anomaly classes only)"]
    for name, m in rows.items():
        maps = (m["map"]["avg"], m["map_corrected"]["avg"]) if m.get("map") else (float("nan"),) * 2
        lines.append(f"{name:<20}{100 * m['auc']:8.2f}{100 * m['ap']:8.2f}{maps[0]:8.2f}{maps[1]:8.2f}")
    return "\n".join(lines)


ROWS = ("teacher", "student offline", "student streaming", "student INT8 streaming")


def evaluate_run(run: str | Path, data: str | Path | None = None, device: torch.device | str = "cpu",
                 batch: int = 256, teacher: bool = True, warmup: Warmup = WARMUP_AUTO,
                 threshold_quantile: float = 0.995, int8: str | None = None) -> dict:
    """Score teacher, student offline and student streaming (and, with ``int8`` = a flavour, the INT8 head
    streaming: :func:`int8_head`) on the test set; merged into RUN/metrics.json.
    The streaming events come from the smoother the bundle will carry (:func:`calibrated_smoother` on the run's
    training data, with ``threshold_quantile`` and ``warmup`` as ``cplvad export`` takes them; the INT8 head keeps
    the float student's, as the device does), and again without warm-up, for comparison."""
    run = Path(run)
    device = torch.device(device)
    cfg = load_config(DistillConfig, run / "config.yaml")
    student, meta = Student.load_run(run, device)
    text_file = load_text_embeddings(run / "text_embeddings.npz")
    if list(text_file.classes) != list(meta["classes"]):
        raise ValueError(f"{run / 'text_embeddings.npz'}: classes {text_file.classes} differ from the student's "
                         f"{meta['classes']}")
    text = torch.from_numpy(text_file.embeddings).to(device)
    data_dir = Path(data or cfg.data)
    truth = load_ground_truth(data_dir, feature_root=cfg.feature_root, dataset=meta.get("dataset"))
    test = load_split(data_dir, "test", truth.label_map.dataset, cfg.feature_root)
    params, _ = calibrated_smoother(student, text_file.embeddings, cfg.data, cfg.feature_root,
                                    truth.label_map.dataset, threshold_quantile, warmup)
    teach, teacher_text = None, None
    if teacher and cfg.teacher and Path(cfg.teacher).is_dir():
        teach, teacher_file = CPLVAD.load_run(cfg.teacher, device)
        teacher_text = torch.from_numpy(teacher_file.embeddings).to(device)
    elif teacher:
        log.warning("teacher run %s not found: the teacher row is left out", cfg.teacher)

    heads: dict[str, HeadFn] = {"student streaming": student_head(student, text)}
    if int8:
        heads["student INT8 streaming"] = int8_head(run, text_file.embeddings, cfg.data, cfg.feature_root,
                                                    truth.label_map.dataset, int8, torch.get_num_threads())
    binary: dict[str, dict[str, np.ndarray]] = {row: {} for row in ROWS}  # row -> video -> [N]
    classes: dict[str, dict[str, np.ndarray]] = {row: {} for row in ROWS}  # row -> video -> [N, M]
    events: dict[str, dict[str, list[car.Run]]] = {row: {} for row in heads}  # row -> video -> events
    cold: dict[str, dict[str, list[car.Run]]] = {row: {} for row in heads}  # the same smoother without warm-up
    seconds = dict.fromkeys(("student offline", *heads), 0.0)
    for video in tqdm(test.videos, desc="stream eval", unit="video", leave=False):
        feats, name = video.load(0), video.name
        if teach is not None:
            o = teach.predict_video(feats, teacher_text)
            binary["teacher"][name], classes["teacher"][name] = o.binary, o.classes
        start = time.perf_counter()
        binary["student offline"][name], classes["student offline"][name] = \
            snippet_scores(offline(student, feats, text), params)
        seconds["student offline"] += time.perf_counter() - start
        for row, head in heads.items():
            start = time.perf_counter()
            streamed = stream_outputs(head, feats, student.config.window, batch)
            seconds[row] += time.perf_counter() - start
            binary[row][name], events[row][name] = smooth(streamed, params)
            cold[row][name] = smooth(streamed, replace(params, warmup=0))[1]
            classes[row][name] = streamed.class_probs

    rows = {row: evaluate_scores(binary[row], classes[row], truth) for row in ROWS if binary[row]}
    for row in heads:
        rows[row]["events"] = event_frame_scores(events[row], truth, params.m) | {
            "theta_on": params.theta_on, "warmup": params.warmup}
        rows[row]["events_no_warmup"] = event_frame_scores(cold[row], truth, params.m)
    if int8:
        rows["student INT8 streaming"]["flavour"] = int8
    for name, s in seconds.items():
        rows[name]["seconds"] = s
    table = format_table(rows)
    ev = rows["student streaming"]["events"]
    log.info("%s: %d test videos, window %d, smoother on %.2f / off %.2f, m %d, g %d, warm-up %d\n%s\n"
             "streaming events: %d (%d false alarms, %.1f per hour of normal video; %.1f without warm-up), frame "
             "precision %.3f / recall %.3f / F1 %.3f; %d of %d anomalous segments alerted, latency median %s s",
             data_dir, len(test), student.config.window, params.theta_on, params.theta_off, params.m, params.g,
             params.warmup, table, ev["events"], ev["false_alarms"], ev["false_alarms_per_hour"],
             rows["student streaming"]["events_no_warmup"]["false_alarms_per_hour"], ev["precision"], ev["recall"],
             ev["f1"], ev["segments_alerted"], ev["segments"],
             "-" if ev["latency_s_median"] is None else f"{ev['latency_s_median']:.1f}")
    result = {name.replace(" ", "_").lower(): m for name, m in rows.items()}
    path = run / "metrics.json"
    merged = (json.loads(path.read_text()) if path.is_file() else {}) | result
    path.write_text(json.dumps(merged, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad eval", description=__doc__.splitlines()[0],
                                     epilog="cplvad eval --scores FILE --data DIR --out FILE evaluates a scores file "
                                            "instead (cplvad eval --scores x --help)")
    parser.add_argument("--run", required=True, type=Path, help="student run folder (cplvad distill's out)")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the run's)")
    parser.add_argument("--batch", type=int, default=256, help="streaming windows per forward pass")
    parser.add_argument("--no-teacher", action="store_true", help="skip the teacher row")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=parse_warmup, default=WARMUP_AUTO, metavar="auto|N",
                        help="no event starts in a stream's first N snippets (as `export --warmup` sets the device; "
                             "default auto, as export)")
    parser.add_argument("--threshold-quantile", type=float, default=0.995, metavar="Q",
                        help="the smoother's threshold, as `export --threshold-quantile` sets it")
    parser.add_argument("--int8", choices=("u8s8", "s8s8"), default=None,
                        help="also the INT8 head's streaming row: u8s8 (what ONNX Runtime runs on a CPU) or s8s8 "
                             "(what TensorRT and OpenVINO build from), calibrated on the training features")
    args = parser.parse_args(argv)
    if not 0 <= args.threshold_quantile < 1:
        parser.error(f"--threshold-quantile {args.threshold_quantile}: expected 0 <= Q < 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        evaluate_run(args.run, args.data, args.device, args.batch, teacher=not args.no_teacher, warmup=args.warmup,
                     threshold_quantile=args.threshold_quantile, int8=args.int8)
    except ValueError as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":  # an alias of `cplvad eval --run RUN`
    raise SystemExit(run_main(main, prog="cplvad eval"))
