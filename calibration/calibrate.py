"""INT8 calibration of a bundle with an accuracy gate (``make calibrate``).

    cplvad calibrate --bundle bundle/ --source VIDEO [--source 0 ...] [--data DIR [--feature-root F]] [--set key=value]
        [--method minmax|entropy|percentile] [--config configs/calibrate/default.yaml]

1. Calibration frames from the deployment's own sources (``calibration.dataset``), saved to
   ``<bundle>/calibration/frames.npz``; a later run without ``--source`` reuses them.
2. Head windows: ring-buffer windows of ``--data``'s training features (any dataset-folder layout of
   ``train.data.release.locate``, the VadCLIP release as published too), or of the calibration
   frames' float CLIP embeddings.
3. Q/DQ models ``clip_visual.{s8s8,u8s8}.onnx`` and ``head.{s8s8,u8s8}.onnx`` (``calibration.quantize``).
4. The gate (``calibration.gate``) on held-out frames / windows and labelled test videos (``--data`` when it has
   ground truth, else a generated benchmark in ``<bundle>/calibration/benchmark``), printed as a table.
5. The manifest gets an ``int8`` section per model (method, set size, per flavour: file, passed, reason,
   figures) and the new files' sha256. ``s8s8`` is what TensorRT and OpenVINO build from, ``u8s8`` what ONNX
   Runtime on CPU runs; a flavour that fails the gate is recorded as failed and the model stays float (FP16 on
   TensorRT). Where ``openvino`` is installed the ``s8s8`` models are also run by OpenVINO (its INT8 kernels round
   differently): their cosine on the held-out data and OpenVINO's fp32 / int8 speed are measured and judged
   apart (the flavour's ``openvino`` entry), and the OpenVINO backend runs INT8 only where that passed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from calibration.dataset import (FrameSet, build_frame_set, embed, even_indices, feature_sequences,
                                 frame_sequences, holdout_mask, pixels, sample_windows)
from calibration.gate import GateBudget, compare_outputs, format_table, judge, speed, stream_scores
from calibration.quantize import FLAVOURS, METHODS, FeedReader, batched_feeds, quantize
from edge.backends import InferenceBackend
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.backends.openvino import OpenVINOBackend
from edge.backends.openvino import available as openvino_available
from edge.bundle import Bundle, ModelFile, load_bundle, write_manifest
from edge.configfile import EXIT_USAGE, StrictModel, add_config_arguments, config_from_args, run_main
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME
from train.data.release import GROUND_TRUTH, load_ground_truth, load_split, locate
from train.data.synth import generate
from train.evaluation.metrics import frame_auc_ap

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("configs/calibrate/default.yaml")
MODELS = ("clip_visual", "head")


class CalibrateConfig(StrictModel):
    frames: int = Field(600, ge=1, description="calibration frames over all sources")
    seed: int = 0
    holdout: float = Field(0.2, gt=0, lt=1)
    live_stride: int = Field(10, ge=1)
    head_windows: int = Field(512, ge=2)
    method: str = "minmax"
    per_channel: bool = True
    batch: int = Field(8, ge=1)
    gate_videos: int = Field(16, ge=2)
    gate_max_snippets: int = Field(128, ge=1)
    speed_rounds: int = Field(5, ge=1)
    threads: int | None = Field(None, ge=1)
    budget: GateBudget = GateBudget()


def flavour_file(model_file: str, flavour: str) -> str:
    """``head.onnx``, ``s8s8`` -> ``head.s8s8.onnx``."""
    stem = model_file.removesuffix(".onnx")
    return f"{stem}.{flavour}.onnx"


def load_frames(bundle: Bundle, sources: list[str], cfg: CalibrateConfig, work: Path) -> FrameSet:
    path = work / "frames.npz"
    if sources:
        frames = build_frame_set(sources, cfg.frames, seed=cfg.seed, spec=bundle.preprocess(),
                                 min_frames=cfg.batch, live_stride=cfg.live_stride)
        log.info("saved the calibration frames to %s (reused when --source is not given)", frames.save(path))
        return frames
    if not path.is_file():
        raise ValueError(f"no --source given and no saved calibration set {path}: pass the deployment's cameras "
                         f"or videos with --source")
    frames = FrameSet.load(path)
    log.info("reusing %d calibration frames from %s", len(frames), path)
    return frames


def release_dataset(bundle: Bundle) -> str | None:
    """The bundle's dataset when it is a release's ('ucf' / 'xd'): picks the lists of a folder holding both."""
    return bundle.manifest.dataset if bundle.manifest.dataset in ("ucf", "xd") else None


def labelled_benchmark(data: Path | None, bundle: Bundle, work: Path) -> Path:
    """A folder with test features and ground truth: ``data`` when it has them, else a generated benchmark."""
    if data is not None and locate(data, release_dataset(bundle)).has("test", *GROUND_TRUTH):
        return data
    out = work / "benchmark"
    if not (out / "dataset.json").is_file():
        layout = bundle.manifest.dataset if bundle.manifest.dataset in ("ucf", "xd") else "ucf"
        log.info("no labelled --data: generating a %s feature benchmark in %s for the head's AUC / AP", layout, out)
        generate(layout, out, seed=0, scale=0.02)
    return out


def gate_span(gt_frames: np.ndarray, max_snippets: int) -> tuple[int, int]:
    """Snippet range [start, stop) of a test video kept for the gate: all of it, or ``max_snippets`` centred on
    its anomalous snippets (from the start for a normal video)."""
    gt = np.asarray(gt_frames).reshape(-1, 16).max(axis=1)  # [T] snippet truth
    n = len(gt)
    if n <= max_snippets:
        return 0, n
    hits = np.flatnonzero(gt > 0.5)
    centre = int(hits.mean()) if len(hits) else max_snippets // 2
    start = min(max(centre - max_snippets // 2, 0), n - max_snippets)
    return start, start + max_snippets


def head_detection(float_head: OnnxRuntimeBackend, int8_heads: dict[str, OnnxRuntimeBackend], bench: Path,
                   bundle: Bundle, videos: int, max_snippets: int, feature_root: str | Path | None = None
                   ) -> dict[str, dict[str, float]]:
    """Frame AUC / AP of the streaming score, float and each INT8 flavour, on ``videos`` evenly chosen test videos
    (at most ``max_snippets`` of each, see :func:`gate_span`)."""
    dataset = release_dataset(bundle)
    truth = load_ground_truth(bench, feature_root=feature_root, dataset=dataset)
    split = load_split(bench, "test", dataset, feature_root)
    picks = even_indices(len(split), videos)
    scores: dict[str, list[np.ndarray]] = {"float": []} | {f: [] for f in int8_heads}
    text = np.ascontiguousarray(bundle.text_embeddings, np.float32)
    params = bundle.smoother_params()  # the score the device thresholds
    gts = []
    for i in picks:
        start, stop = gate_span(truth.frames_of(int(i)), max_snippets)
        feats = split.videos[int(i)].load(0)[start:stop].astype(np.float32)
        gts.append(truth.frames_of(int(i))[16 * start:16 * stop])
        scores["float"].append(stream_scores(float_head, feats, text, bundle.window, params))
        for flavour, head in int8_heads.items():
            scores[flavour].append(stream_scores(head, feats, text, bundle.window, params))
    gt = np.concatenate(gts)
    out = {}
    for name, s in scores.items():
        auc, ap = frame_auc_ap(s, gt)
        out[name] = {"auc": auc, "ap": ap}
    return out


def head_calibration_set(sequences: list[np.ndarray], window: int, cfg: CalibrateConfig
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head's ring-buffer windows [K, W, D], their masks [K, W] and which are held out for the gate [K]."""
    x, mask = sample_windows(sequences, window, cfg.head_windows, cfg.seed)
    return x, mask, holdout_mask(len(x), cfg.holdout, cfg.seed)


def quantize_head(src: Path, dst: Path, sequences: list[np.ndarray], text: np.ndarray, window: int,
                  cfg: CalibrateConfig, flavour: str) -> dict:
    """``dst``: the Q/DQ head calibrated as :func:`calibrate` does it, on the windows of ``sequences`` it does
    not hold out (for a run's INT8 evaluation without a bundle)."""
    x, mask, held = head_calibration_set(sequences, window, cfg)
    rows = np.flatnonzero(~held)
    reader = FeedReader(batched_feeds({"features": x[rows], "mask": mask[rows]}, cfg.batch, {"text": text}))
    return quantize(src, dst, reader, flavour=flavour, method=cfg.method, per_channel=cfg.per_channel)


def calibrate(bundle_dir: str | Path, sources: list[str], cfg: CalibrateConfig, *, data: str | Path | None = None,
              feature_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Quantize, gate and record; returns the gate rows (one per model and flavour)."""
    start = time.perf_counter()
    if cfg.method not in METHODS:
        raise ValueError(f"method={cfg.method!r}; expected one of {sorted(METHODS)}")
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    work = bundle_dir / "calibration"
    data = Path(data) if data is not None else None
    frames = load_frames(bundle, sources, cfg, work)
    spec = bundle.preprocess()
    text = np.ascontiguousarray(bundle.text_embeddings, np.float32)

    floats = {m: OnnxRuntimeBackend(bundle.file(m), threads=cfg.threads) for m in MODELS}
    embeddings = embed(floats["clip_visual"], frames.crops, batch=cfg.batch, spec=spec, desc="float CLIP")
    held = holdout_mask(len(frames), cfg.holdout, cfg.seed)
    if data is not None and locate(data, release_dataset(bundle)).has("train"):
        sequences = feature_sequences(data, split="train", feature_root=feature_root, dataset=release_dataset(bundle))
        log.info("head windows from %d training videos of %s", len(sequences), data)
    else:
        sequences = frame_sequences(embeddings, frames.source_index)
        log.info("head windows from the calibration frames' CLIP embeddings (%d sources)", len(sequences))
    x, mask, held_w = head_calibration_set(sequences, bundle.window, cfg)

    def clip_feeds(rows: np.ndarray) -> list[dict[str, np.ndarray]]:
        return batched_feeds({CLIP_INPUT_NAME: pixels(frames.crops[rows], spec)}, cfg.batch)

    def head_feeds(rows: np.ndarray) -> list[dict[str, np.ndarray]]:
        return batched_feeds({"features": x[rows], "mask": mask[rows]}, cfg.batch, {"text": text})

    feeds = {"clip_visual": clip_feeds, "head": head_feeds}
    set_sizes = {"clip_visual": (int((~held).sum()), int(held.sum())),
                 "head": (int((~held_w).sum()), int(held_w.sum()))}
    outputs = {"clip_visual": [CLIP_OUTPUT_NAME], "head": ["binary", "classes"]}
    rows: list[dict[str, Any]] = []
    int8_backends: dict[str, dict[str, OnnxRuntimeBackend]] = {}
    for model in MODELS:
        source = bundle.file(model)
        calib_rows, test_rows = (~held, held) if model == "clip_visual" else (~held_w, held_w)
        reader = FeedReader(feeds[model](np.flatnonzero(calib_rows)))
        held_feeds = feeds[model](np.flatnonzero(test_rows))
        int8_backends[model] = {}
        for flavour in FLAVOURS:
            target = bundle_dir / flavour_file(source.name, flavour)
            t0 = time.perf_counter()
            info = quantize(source, target, reader, flavour=flavour, method=cfg.method, per_channel=cfg.per_channel)
            backend = OnnxRuntimeBackend(target, threads=cfg.threads)
            int8_backends[model][flavour] = backend
            figures = compare_outputs(floats[model], backend, held_feeds, outputs[model])
            rows.append({"model": model, "flavour": flavour, "file": target.name, **info, **figures,
                         "quantize_s": round(time.perf_counter() - t0, 1)})

    bench = labelled_benchmark(data, bundle, work)
    detection = head_detection(floats["head"], int8_backends["head"], bench, bundle, cfg.gate_videos,
                               cfg.gate_max_snippets, feature_root)
    for row in rows:
        if row["model"] == "head":
            f, q = detection["float"], detection[row["flavour"]]
            row |= {"auc_float": f["auc"], "auc_int8": q["auc"], "ap_float": f["ap"], "ap_int8": q["ap"],
                    "ap_drop": f["ap"] - q["ap"], "gate_data": str(bench)}

    make_feed = {
        "clip_visual": lambda b: {CLIP_INPUT_NAME: pixels(frames.crops[np.arange(b) % len(frames)], spec)},
        "head": lambda b: {"features": x[np.arange(b) % len(x)], "mask": mask[np.arange(b) % len(x)], "text": text},
    }
    openvino = openvino_backends(bundle, cfg.threads, work / "openvino_cache")
    for model in MODELS:
        extra = {f"openvino {p}": b for p, b in openvino.get(model, {}).items()}
        ms = speed({"fp32": floats[model], **int8_backends[model], **extra}, make_feed[model], (1, 8),
                   cfg.speed_rounds)
        for row in rows:
            if row["model"] == model:
                row["ms"] = {"fp32": ms["fp32"], "int8": ms[row["flavour"]]}
                row["speedup"] = {b: ms["fp32"][b] / ms[row["flavour"]][b] for b in (1, 8)}
            if row["model"] == model and row["flavour"] == "s8s8" and extra:
                held_feeds = feeds[model](np.flatnonzero(held if model == "clip_visual" else held_w))
                figures = compare_outputs(floats[model], openvino[model]["int8"], held_feeds, outputs[model])
                verdict = judge({**figures, **{k: row[k] for k in ("ap_drop",) if k in row}}, cfg.budget)
                row["openvino"] = {"passed": verdict.passed, "reason": verdict.reason, **figures,
                                   "ms": {"fp32": ms["openvino fp32"], "int8": ms["openvino int8"]}}

    for row in rows:
        verdict = judge(row, cfg.budget)
        row["passed"], row["reason"] = verdict.passed, verdict.reason

    record(bundle, rows, cfg, set_sizes, len(frames))
    print("\nINT8 gate (INT8 vs float on held-out data; speed = ONNX Runtime fp32 / int8 on this machine)")
    print(format_table(rows))
    for r in (r for r in rows if "openvino" in r):
        ov = r["openvino"]
        print(f"{r['model']:12} s8s8 on OpenVINO: cos mean {ov['cosine_mean']:.4f} p1 {ov['cosine_p1']:.4f}, "
              f"ms fp32/int8 b1 {ov['ms']['fp32'][1]:.1f}/{ov['ms']['int8'][1]:.1f} b8 {ov['ms']['fp32'][8]:.1f}/"
              f"{ov['ms']['int8'][8]:.1f}: {'INT8' if ov['passed'] else 'FLOAT'}: {ov['reason']}")
    summary = []
    for model in MODELS:
        mine = {r["flavour"]: r for r in rows if r["model"] == model}
        trt = "INT8" if mine["s8s8"]["passed"] else f"FP16 ({mine['s8s8']['reason']})"
        cpu = f"INT8 x{mine['u8s8']['speedup'][8]:.2f}" if mine["u8s8"]["passed"] else \
            f"fp32 ({mine['u8s8']['reason']})"
        ov = mine["s8s8"].get("openvino")
        if ov:
            cpu += (f", OpenVINO INT8 x{ov['ms']['fp32'][8] / ov['ms']['int8'][8]:.2f}" if ov["passed"] else
                    f", OpenVINO fp32 ({ov['reason']})")
        summary.append(f"{model}: TensorRT {trt}, ONNX Runtime CPU {cpu}")
    log.info("calibrated %s in %.0f s (%s, %d frames, %d head windows): %s", bundle_dir,
             time.perf_counter() - start, cfg.method, len(frames), len(x), "; ".join(summary))
    log.info("next, on the Jetson: make engine BUNDLE=%s  (cplvad engine --bundle %s)", bundle_dir,
             bundle_dir)
    return rows


def openvino_backends(bundle: Bundle, threads: int | None, cache: Path) -> dict[str, dict[str, InferenceBackend]]:
    """Per model, OpenVINO running the float model (``fp32``, f32 compute) and the s8s8 Q/DQ model (``int8``);
    empty where openvino is not installed."""
    if not openvino_available():
        log.info("openvino not installed: the gate measures ONNX Runtime only")
        return {}
    return {model: {"fp32": OpenVINOBackend(bundle.file(model), precision="f32", threads=threads, cache_dir=cache),
                    "int8": OpenVINOBackend(bundle.path / flavour_file(bundle.file(model).name, "s8s8"),
                                            precision="f32", threads=threads, cache_dir=cache)}
            for model in MODELS}


def record(bundle: Bundle, rows: list[dict[str, Any]], cfg: CalibrateConfig, set_sizes: dict[str, tuple[int, int]],
           frames: int) -> None:
    """Write the ``int8`` sections and the new files' sha256 into the manifest, then re-load the bundle."""
    manifest = bundle.manifest
    models = dict(manifest.models)
    written = []
    keep = ("cosine_mean", "cosine_p1", "max_abs_diff", "auc_float", "auc_int8", "ap_float", "ap_int8", "ap_drop")
    for model in MODELS:
        flavours = {}
        for row in (r for r in rows if r["model"] == model):
            written.append(row["file"])
            flavours[row["flavour"]] = {
                "file": row["file"], "passed": row["passed"], "reason": row["reason"],
                "gate": {k: round(float(row[k]), 6) for k in keep if k in row},
                "ms": {name: {str(b): round(v, 3) for b, v in per.items()} for name, per in row["ms"].items()},
            }
            if "openvino" in row:
                ov = row["openvino"]
                flavours[row["flavour"]]["openvino"] = {
                    "passed": ov["passed"], "reason": ov["reason"],
                    "gate": {k: round(float(ov[k]), 6) for k in keep if k in ov},
                    "ms": {name: {str(b): round(v, 3) for b, v in per.items()} for name, per in ov["ms"].items()},
                }
        calib, held = set_sizes[model]
        section = {"method": cfg.method, "per_channel": cfg.per_channel, "calibration_samples": calib,
                   "heldout_samples": held, "frames": frames, "budget": cfg.budget.model_dump(), "flavours": flavours}
        models[model] = ModelFile(file=manifest.models[model].file, precision=manifest.models[model].precision,
                                  int8=section)
    write_manifest(bundle.path, manifest.model_copy(update={"models": models}), rehash=written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder (cplvad export's out)")
    parser.add_argument("--source", action="append", default=[],
                        help="camera index, stream URL, video / image file or folder (repeatable); "
                             "omit to reuse <bundle>/calibration/frames.npz")
    parser.add_argument("--data", type=Path, help="dataset folder (ours, or VadCLIP's lists and ground truth as "
                                                  "published) for head windows and its AUC / AP")
    parser.add_argument("--feature-root", type=Path, default=None,
                        help="the folder the release's feature archives were unpacked into (lists of absolute "
                             "paths)")
    parser.add_argument("--method", choices=sorted(METHODS), help="calibration method (sets method)")
    add_config_arguments(parser, CalibrateConfig, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(CalibrateConfig, args, {"method": "--method"})
    try:
        calibrate(args.bundle, args.source, cfg, data=args.data, feature_root=args.feature_root)
    except (FileNotFoundError, ValueError) as err:  # a missing or unfit bundle, source or dataset
        log.error("%s", err)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":  # an alias of `cplvad calibrate`
    sys.exit(run_main(main, prog="cplvad calibrate"))
