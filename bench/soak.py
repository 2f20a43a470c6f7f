"""Soak test of the device loop: N looped cameras paced in real time; memory slope, drops, queues; largest real-time N.

    python bench/soak.py [--sources tiny random | --bundle DIR] [--precision fp32 int8] [--cameras 1 2 4 8 16]
        [--seconds 60] [--video FILE] [--out bench/results/soak.json]

For each bundle (built with random weights per CLIP source, ``tiny``: the test-size CLIP, ``random``: the real
ViT-B/16 with random weights, real speed; or the ``--bundle`` given), each precision (``runtime.precision``;
``int8`` needs a bundle whose INT8 models passed their gate, ``cplvad calibrate``) and each camera
count N (ascending, stopping at the first N that fails), a fresh process runs
``edge.pipeline.Pipeline`` on N copies of a video, looped and paced at the file's frame rate as a live camera
would be, with the newest-frame capture policy (``capture.queue_size``; a frame the loop cannot take in time is
dropped and counted). Once a second it samples the process RSS, each capture's counters and queue depth, and the
stream counters. Over the second half of the run (after warm-up) it reports:

- RSS slope (MB/min, least squares): a leak shows as a steady positive slope;
- frames dropped by the capture policy, as a fraction of the frames the model wanted;
- the largest capture queue depth seen (bounded by ``queue_size`` by construction);
- snippets scored per second vs. the snippets the cameras produce (frames / 16).

N holds real time when drops <= ``--max-drop`` (1 %) and at least 90 % of the produced snippets were scored
(short of them by at most one per camera: the snippets in progress at the ends of a short measurement).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.bundle import MANIFEST, load_bundle  # noqa: E402
from edge.capture import CaptureOptions, parse_source  # noqa: E402
from edge.config import RuntimeConfig  # noqa: E402
from edge.pipeline import Pipeline, open_models  # noqa: E402
from edge.snippets import FRAMES_PER_SNIPPET  # noqa: E402
from train.data.samples import sample_video  # noqa: E402
from bench.edge_fps import PERSON_VIDEO, int8_models  # noqa: E402

log = logging.getLogger("bench.soak")

RANDOM_WEIGHTS = "random weights"  # the bundle label of those built from --sources


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def slope_per_minute(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times_s``, per minute (0 with fewer than two samples)."""
    if len(times_s) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(times_s), np.asarray(values), 1)[0] * 60)


def sample(pipeline: Pipeline, t: float) -> dict[str, Any]:
    """One sample: RSS, and per camera the capture counters, its queue depth and the snippets scored."""
    cameras = {}
    for name, capture in pipeline.captures.items():
        s = capture.stats()
        queued = s.frames_read - s.skipped - s.corrupt - s.delivered - s.dropped  # read, wanted, not yet taken
        cameras[name] = {"read": s.frames_read, "wanted": s.frames_read - s.skipped, "dropped": s.dropped,
                         "queued": queued, "snippets": pipeline.streams[name].counters.snippets,
                         "source_fps": s.fps}
    return {"t": t, "rss_mb": rss_mb(), "cameras": cameras}


def summarise(samples: list[dict[str, Any]], max_drop: float) -> dict[str, Any]:
    """Second-half figures of one run (see the module docstring)."""
    half = samples[len(samples) // 2:]
    first, last = half[0], half[-1]
    seconds = last["t"] - first["t"]
    delta = lambda key: sum(last["cameras"][c][key] - first["cameras"][c][key] for c in last["cameras"])  # noqa: E731
    wanted, dropped, read, snippets = delta("wanted"), delta("dropped"), delta("read"), delta("snippets")
    produced_snippets = read / FRAMES_PER_SNIPPET
    drop_fraction = dropped / wanted if wanted else 0.0
    scored_fraction = snippets / produced_snippets if produced_snippets else 0.0
    unscored_allowed = max(0.1 * produced_snippets, len(last["cameras"]))  # 10 %, or the snippets in progress
    return {
        "seconds_measured": round(seconds, 1),
        "rss_mb_start": round(samples[0]["rss_mb"], 1), "rss_mb_end": round(last["rss_mb"], 1),
        "rss_slope_mb_per_min": round(slope_per_minute([s["t"] for s in half], [s["rss_mb"] for s in half]), 2),
        "frames_per_s": round(read / seconds, 1) if seconds else 0.0,
        "drop_fraction": round(drop_fraction, 4),
        "max_queue_depth": max(c["queued"] for s in samples for c in s["cameras"].values()),
        "snippets_per_s": round(snippets / seconds, 2) if seconds else 0.0,
        "produced_snippets_per_s": round(produced_snippets / seconds, 2) if seconds else 0.0,
        "scored_fraction": round(scored_fraction, 3),
        "real_time": drop_fraction <= max_drop and produced_snippets - snippets <= unscored_allowed,
    }


def soak_one(bundle: Path, video: Path, cameras: int, seconds: float, *, threads: int | None, batch: int,
             queue_size: int, max_drop: float, precision: str = "fp32") -> dict[str, Any]:
    """Run ``cameras`` looped, paced copies of ``video`` for ``seconds`` in this process; the run's summary."""
    runtime = RuntimeConfig(threads=threads, clip_batch=batch, precision=precision)
    models = open_models(load_bundle(bundle, verify_hashes=False), runtime)
    specs = [parse_source(f"cam{i}={video}") for i in range(cameras)]
    capture = CaptureOptions(realtime=True, loop=True, queue_size=queue_size)
    pipeline = Pipeline(models, specs, device="soak", capture=capture, runtime=runtime, stats_interval_s=1e9)
    loop = threading.Thread(target=pipeline.run, args=(threading.Event(),), kwargs={"max_seconds": seconds},
                            name="pipeline")
    start = time.monotonic()
    loop.start()
    samples = []
    while loop.is_alive():
        loop.join(1.0)
        if loop.is_alive():
            samples.append(sample(pipeline, time.monotonic() - start))
    if len(samples) < 4:
        raise RuntimeError(f"only {len(samples)} samples in {seconds}s; give --seconds >= 5")
    return {"cameras": cameras, **summarise(samples, max_drop)}


def run_child(args: argparse.Namespace, bundle: Path, cameras: int, precision: str) -> dict[str, Any]:
    """One configuration in a fresh process, so that its RSS is its own."""
    command = [sys.executable, __file__, "--child", "--bundle", str(bundle), "--cameras", str(cameras),
               "--seconds", str(args.seconds), "--video", str(args.video), "--batch", str(args.batch),
               "--queue-size", str(args.queue_size), "--max-drop", str(args.max_drop), "--precision", precision]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 300)
    if done.returncode != 0:
        raise RuntimeError(f"soak of {cameras} camera(s) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", default=["tiny", "random"], choices=["tiny", "random"],
                        help="CLIP sources of the random-weight bundles built into --cache")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="soak this bundle instead (e.g. a calibrated one, for --precision int8)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "int8"],
                        help="runtime.precision values to soak, each in turn")
    parser.add_argument("--cameras", nargs="+", type=int, default=[1, 2, 4, 8, 16],
                        help="camera counts to try, ascending; stops at the first that fails")
    parser.add_argument("--seconds", type=float, default=60.0, help="run time per camera count")
    parser.add_argument("--video", type=Path, default=None,
                        help=f"video file to loop (default: the sample {PERSON_VIDEO}, fetched once)")
    parser.add_argument("--encode-every", type=int, default=4, help="snippet.encode_every of the built bundles")
    parser.add_argument("--batch", type=int, default=8, help="runtime.clip_batch")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per model")
    parser.add_argument("--queue-size", type=int, default=16, help="capture.queue_size (as configs/edge/default.yaml)")
    parser.add_argument("--max-drop", type=float, default=0.01, help="largest dropped fraction that is real time")
    parser.add_argument("--cache", type=Path, default=Path("bench/results/tmp"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.video is None:
        args.video = sample_video(PERSON_VIDEO, fetch=True)
        if args.video is None:
            parser.error(f"the sample {PERSON_VIDEO} is not on this machine and could not be fetched: pass --video FILE")
    if not args.video.is_file():
        parser.error(f"--video {args.video} not found")
    if args.bundle is not None and not (args.bundle / MANIFEST).is_file():
        parser.error(f"--bundle {args.bundle}: no {MANIFEST}; expected a bundle folder (cplvad export)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("edge.pipeline", "edge.capture", "edge.bundle", "edge.backends.onnxruntime"):
        logging.getLogger(name).setLevel(logging.WARNING)

    if args.child:
        result = soak_one(args.bundle, args.video, args.cameras[0], args.seconds, threads=args.threads,
                          batch=args.batch, queue_size=args.queue_size, max_drop=args.max_drop,
                          precision=args.precision[0])
        print(json.dumps(result))
        return 0

    if args.bundle is not None:
        bundles = [(args.bundle, load_bundle(args.bundle, verify_hashes=False).manifest.clip.source,
                    args.bundle.name)]
        if "int8" in args.precision and not int8_models(args.bundle):
            parser.error(f"--precision int8: no model of {args.bundle} passed its INT8 gate (run python -m "
                         "calibration.calibrate on it, or soak fp32 only)")
    elif "int8" in args.precision:
        parser.error("--precision int8 needs a calibrated --bundle (the bundles built from --sources are float)")
    else:
        from bench.edge_fps import cached_bundle  # builds the bundles (needs torch); the child does not

        bundles = [(cached_bundle(args.cache, source, args.encode_every), source, RANDOM_WEIGHTS)
                   for source in args.sources]

    rows, largest = [], []
    for bundle, clip, label in bundles:
        encode_every = load_bundle(bundle, verify_hashes=False).encode_every
        for precision in args.precision:
            int8 = int8_models(bundle) if precision == "int8" else []
            best = {"clip": clip, "precision": precision, "bundle": label, "cameras": 0}
            for cameras in tqdm(sorted(args.cameras), desc=f"soak {clip} {precision}", unit="config"):
                row = {"clip": clip, "precision": precision, "int8_models": int8, "bundle": label,
                       "encode_every": encode_every, **run_child(args, bundle, cameras, precision)}
                log.info("%s", row)
                rows.append(row)
                if not row["real_time"]:
                    break
                best["cameras"] = cameras
            largest.append(best)

    print(f"\n{'clip':7} {'prec':5} {'cams':>4} {'frames/s':>9} {'snip/s':>7} {'scored':>7} {'dropped':>8} "
          f"{'max queue':>9} {'RSS MB':>7} {'MB/min':>7}  real time")
    for r in rows:
        print(f"{r['clip']:7} {r['precision']:5} {r['cameras']:>4} {r['frames_per_s']:>9.1f} "
              f"{r['snippets_per_s']:>7.2f} {r['scored_fraction']:>7.1%} {r['drop_fraction']:>8.2%} "
              f"{r['max_queue_depth']:>9} {r['rss_mb_end']:>7.0f} {r['rss_slope_mb_per_min']:>7.2f}  "
              f"{'yes' if r['real_time'] else 'NO'}")
    print("largest real-time camera count: "
          + ", ".join(f"{b['clip']} {b['precision']} {b['cameras']}" for b in largest))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
        "video": args.video.name, "seconds": args.seconds, "batch": args.batch, "threads": args.threads,
        "queue_size": args.queue_size, "max_drop": args.max_drop, "largest_real_time": largest, "rows": rows},
        indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
