"""End-to-end device loop speed: frames/s and ms per stage for 1, 2, 4 cameras, tiny and real-size CLIP.

    python bench/edge_fps.py --out bench/results/edge_fps.json [--sources tiny random | --bundle DIR]
        [--precision fp32 int8] [--cameras 1 2 4] [--seconds 10] [--encode-every 4] [--threads N] [--video FILE]

Runs ``edge.pipeline.Pipeline`` as the device does (capture threads, batched CLIP encoder, ring buffers, head,
smoother, events to a JSON-lines file) on N copies of a real video read as fast as the loop takes frames (no
pacing, nothing dropped), for ``--seconds`` per configuration. ``random`` is the real ViT-B/16 with random weights
(the speed is real, the features are not); the head is the default-size causal student (random weights). The
bundles are built once into ``--cache``; ``--bundle DIR`` measures a trained bundle instead, and with a calibrated
one (``cplvad calibrate``) ``--precision int8`` runs the models that passed their INT8 gate.
Prints a table and writes the figures as JSON.

"encoded fps" counts the frames that went through CLIP, over all cameras; a camera at F frames/s needs F / K of
them (K = encode_every), so "camera fps supported" = encoded fps x K / cameras.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime

from edge.bundle import MANIFEST, load_bundle
from edge.capture import CaptureOptions, parse_source
from edge.config import RuntimeConfig
from edge.pipeline import JsonlSink, Pipeline, model_precisions, open_models
from edge.preprocess import CLIP_INPUT_NAME
from edge.smoother import SmootherParams
from train.data.labels import label_map
from train.data.samples import sample_video

log = logging.getLogger("bench.edge_fps")

PERSON_VIDEO = "one-by-one-person-detection.mp4"  # the default looped video (train.data.samples)


def cached_bundle(cache: Path, clip: str, encode_every: int) -> Path:
    """A random-weight bundle (``train.export.bundle.build_random_bundle``), built once into ``cache``."""
    from train.export.bundle import build_random_bundle  # torch: only where a bundle is built
    from train.models.student import StudentConfig

    path = cache / f"bundle-{clip}-k{encode_every}"
    if not (path / MANIFEST).is_file():
        log.info("building the %s bundle in %s (once)", clip, path)
        build_random_bundle(path, clip=clip, student=StudentConfig(), classes=label_map("ucf").names,
                            encode_every=encode_every, smoother=SmootherParams())
    return path


def int8_models(bundle: Path) -> list[str]:
    """The models of ``bundle`` that ``runtime.precision: int8`` runs in INT8 (their INT8 flavour passed its gate)."""
    precisions = model_precisions(load_bundle(bundle, verify_hashes=False), RuntimeConfig(precision="int8"))
    return sorted(model for model, precision in precisions.items() if precision == "int8")


def measure(bundle: Path, video: Path, cameras: int, seconds: float, threads: int | None, batch: int,
            precision: str = "fp32") -> dict:
    """Run the loop on ``cameras`` copies of ``video`` for ``seconds``; the run's stats message."""
    runtime = RuntimeConfig(threads=threads, clip_batch=batch, precision=precision)
    models = open_models(load_bundle(bundle, verify_hashes=False), runtime)
    models.clip.run({CLIP_INPUT_NAME: np.zeros((batch, 3, 224, 224), np.float32)})  # warm-up
    specs = [parse_source(f"cam{i}={video}") for i in range(cameras)]
    with tempfile.TemporaryDirectory() as tmp:
        sink = JsonlSink(Path(tmp) / "events.jsonl")
        pipeline = Pipeline(models, specs, device="bench", capture=CaptureOptions(realtime=False, loop=True,
                            queue_size=16), runtime=runtime, sinks=[sink], stats_interval_s=1e9)
        start = time.perf_counter()
        pipeline.run(threading.Event(), max_seconds=seconds)
        wall = time.perf_counter() - start
        sink.close()
    stats = pipeline.last_stats
    frames = sum(c["frames_encoded"] for c in stats["cameras"].values())
    snippets = sum(c["snippets"] for c in stats["cameras"].values())
    dropped = sum(c["dropped"] for c in stats["cameras"].values())
    return {"cameras": cameras, "seconds": round(wall, 2), "encoded_fps": round(frames / wall, 2),
            "snippets_per_s": round(snippets / wall, 3), "dropped": dropped,
            "ms_per_item": {k: v["ms_per_item"] for k, v in stats["stages"].items()},
            "ms_per_call": {k: v["ms_per_call"] for k, v in stats["stages"].items()}}


def video_or_exit(parser: argparse.ArgumentParser, video: Path | None) -> Path:
    """``--video``, or the sample video (fetched once) when none is given; a parser error when neither is there."""
    if video is None:
        video = sample_video(PERSON_VIDEO, fetch=True)
        if video is None:
            parser.error(f"the sample {PERSON_VIDEO} is not on this machine and could not be fetched: pass --video FILE")
    if not video.is_file():
        parser.error(f"--video {video} not found")
    return video


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/edge_fps.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", default=["tiny", "random"], choices=["tiny", "random"],
                        help="CLIP sources of the random-weight bundles built into --cache")
    parser.add_argument("--bundle", type=Path, default=None, help="measure this bundle instead of --sources")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "int8"],
                        help="runtime.precision values to measure, each in turn (int8 needs a calibrated --bundle)")
    parser.add_argument("--cameras", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=10.0, help="run time per configuration")
    parser.add_argument("--encode-every", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="runtime.clip_batch")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per model")
    parser.add_argument("--video", type=Path, default=None,
                        help=f"video file to loop (default: the sample {PERSON_VIDEO}, fetched once)")
    parser.add_argument("--cache", type=Path, default=Path("bench/results/tmp"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/edge_fps.json"))
    args = parser.parse_args(argv)
    args.video = video_or_exit(parser, args.video)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("edge.pipeline", "edge.capture", "edge.bundle", "edge.backends.onnxruntime"):
        logging.getLogger(name).setLevel(logging.WARNING)

    if args.bundle is not None:
        if not (args.bundle / MANIFEST).is_file():
            parser.error(f"--bundle {args.bundle}: no {MANIFEST}; expected a bundle folder (cplvad export)")
        if "int8" in args.precision and not int8_models(args.bundle):
            parser.error(f"--precision int8: no model of {args.bundle} passed its INT8 gate "
                         f"(cplvad calibrate --bundle {args.bundle})")
        loaded = load_bundle(args.bundle, verify_hashes=False)
        bundles = [(args.bundle, loaded.manifest.clip.source, loaded.encode_every)]
    elif "int8" in args.precision:
        parser.error("--precision int8 needs a calibrated --bundle (the bundles built from --sources are float)")
    else:
        bundles = [(cached_bundle(args.cache, s, args.encode_every), s, args.encode_every) for s in args.sources]

    rows = []
    for bundle, source, encode_every in bundles:
        for precision in args.precision:
            for cameras in args.cameras:
                row = {"clip": source, "precision": precision,
                       **measure(bundle, args.video, cameras, args.seconds, args.threads, args.batch, precision)}
                row["camera_fps_supported"] = round(row["encoded_fps"] * encode_every / cameras, 2)
                log.info("%s", row)
                rows.append(row)

    stages = ("preprocess", "clip", "head", "smoother", "publish")
    print(f"\n{'clip':7} {'prec':5} {'cams':>4} {'enc fps':>8} {'cam fps':>8}  " + " ".join(f"{s:>10}" for s in stages)
          + "   (ms per frame / snippet / event)")
    for r in rows:
        print(f"{r['clip']:7} {r['precision']:5} {r['cameras']:>4} {r['encoded_fps']:>8.1f} "
              f"{r['camera_fps_supported']:>8.1f}  " + " ".join(f"{r['ms_per_item'][s]:>10.2f}" for s in stages))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2), "onnxruntime": onnxruntime.__version__},
        "encode_every": bundles[0][2], "batch": args.batch, "threads": args.threads, "video": args.video.name,
        "rows": rows}, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
