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
- snippets scored per second vs. the snippets the cameras produce (frames / 16);
- the loop's load per stage (``edge.stats.StageTimer``: seconds of preprocess, clip, head, smoother, publish per
  second of wall time), which names the bottleneck; decoding runs in the capture threads (its cost per frame:
  ``cplvad bench encoder-runtimes``, preprocess.json).

N holds real time when drops <= ``--max-drop`` (1 %) and at least 90 % of the produced snippets were scored
(short of them by at most one per camera: the snippets in progress at the ends of a short measurement).

Runtimes: every ``--backend`` (onnxruntime, openvino) x ``--precision`` (fp32, int8), and for OpenVINO's float
models every ``--openvino-precision`` (f32, bf16, auto); each row records what the encoder computed in. With
``--cameras search`` the counts are found rather than listed: the first guess comes from the encoder's measured
images/s (85 % of the cameras it could encode alone), then up by half until a count fails, down by a third
until one holds, then bisection (:func:`next_camera_count`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.backends.openvino import cpu_flags, cpu_model, isa_summary  # noqa: E402
from edge.bundle import MANIFEST, load_bundle  # noqa: E402
from edge.capture import CaptureOptions, parse_source  # noqa: E402
from edge.config import RuntimeConfig  # noqa: E402
from edge.pipeline import Pipeline, open_models  # noqa: E402
from edge.snippets import FRAMES_PER_SNIPPET  # noqa: E402
from bench.edge_fps import PERSON_VIDEO, int8_models, video_or_exit  # noqa: E402

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
    return {"t": t, "rss_mb": rss_mb(), "cameras": cameras, "stage_s": pipeline.timer.totals()}


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
        **({"worker_load": {stage: round((last["stage_s"][stage] - first["stage_s"][stage]) / seconds, 3)
                            for stage in last["stage_s"]}} if "stage_s" in last and seconds else {}),
    }


def soak_one(bundle: Path, video: Path, cameras: int, seconds: float, *, runtime: RuntimeConfig, queue_size: int,
             max_drop: float) -> dict[str, Any]:
    """Run ``cameras`` looped, paced copies of ``video`` for ``seconds`` in this process; the run's summary."""
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


def next_camera_count(tried: dict[int, bool], start: int, limit: int) -> int | None:
    """The next camera count to soak given those ``tried`` (count -> held real time), or None when the largest
    count that holds is known: ``start`` first; up by half while all hold (to ``limit``), down by a third
    while none does (to 1), then bisection between the largest that held and the smallest that failed."""
    if not tried:
        return max(1, min(start, limit))
    held = max((n for n, ok in tried.items() if ok), default=0)
    failed = min((n for n, ok in tried.items() if not ok), default=None)
    if failed is None:
        return None if held >= limit else min(limit, held + max(1, held // 2))
    if held == 0:
        return None if failed <= 1 else max(1, failed - max(1, failed // 3))
    return None if failed - held <= 1 else (held + failed) // 2


def searched_counts(tried: dict[int, bool], start: int, limit: int) -> Iterator[int]:
    """The counts :func:`next_camera_count` asks for, as ``tried`` fills in."""
    while (cameras := next_camera_count(tried, start, limit)) is not None:
        yield cameras


def first_guess(bundle: Path, runtime: RuntimeConfig, video: Path) -> tuple[int, float]:
    """85 % of the cameras of ``video``'s frame rate the encoder alone could keep up with (and its images/s at
    ``runtime.clip_batch``, the median of 3 calls after a warm-up)."""
    import cv2

    from edge.preprocess import CLIP_INPUT_NAME

    models = open_models(load_bundle(bundle, verify_hashes=False), runtime)
    x = {CLIP_INPUT_NAME: np.zeros((runtime.clip_batch, 3, 224, 224), np.float32)}
    models.clip.run(x)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        models.clip.run(x)
        times.append(time.perf_counter() - t0)
    images_per_s = runtime.clip_batch / float(np.median(times))
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    return max(1, int(0.85 * images_per_s * models.encode_every / fps)), images_per_s


def runtimes_of(args: argparse.Namespace) -> list[RuntimeConfig]:
    """One runtime per backend x precision (x OpenVINO float precision for OpenVINO's float models)."""
    out = []
    for backend in args.backend:
        for precision in args.precision:
            floats = args.openvino_precision if backend == "openvino" and precision == "fp32" else ["auto"]
            out += [RuntimeConfig(backend=backend, precision=precision, openvino_precision=ov, threads=args.threads,
                                  clip_batch=args.batch) for ov in floats]
    return out


def runtime_name(runtime: RuntimeConfig, bundle: Path) -> str:
    """'onnxruntime fp32', 'openvino bf16', 'openvino int8': the backend and what the encoder computes in."""
    from edge.pipeline import model_precisions

    clip = model_precisions(load_bundle(bundle, verify_hashes=False), runtime)["clip_visual"]
    return f"{runtime.backend} {clip}"


def run_child(args: argparse.Namespace, bundle: Path, cameras: int, runtime: RuntimeConfig) -> dict[str, Any]:
    """One configuration in a fresh process, so that its RSS is its own."""
    command = [sys.executable, __file__, "--child", "--bundle", str(bundle), "--cameras", str(cameras),
               "--seconds", str(args.seconds), "--video", str(args.video), "--batch", str(args.batch),
               "--queue-size", str(args.queue_size), "--max-drop", str(args.max_drop), "--precision",
               runtime.precision, "--backend", runtime.backend, "--openvino-precision", runtime.openvino_precision]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 300)
    if done.returncode != 0:
        raise RuntimeError(f"soak of {cameras} camera(s) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe_video(path: Path) -> str:
    """'name (768x432, 30 fps)'."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return f"{path.name} ({size[0]}x{size[1]}, {fps:g} fps)"


def markdown(result: dict[str, Any]) -> str:
    """The README's soak table: per runtime the largest camera count held in real time and the loop's load."""
    m = result["machine"]
    lines = [f"Device loop soak on {m['cpu']} ({m.get('isa', '')}), {m['cores']} cores, load "
             f"{m['load_average_1min']}: {result['video']} looped and paced at its frame rate per camera, "
             f"clip batch {result['batch']}, {result['seconds']:.0f} s per camera count (second half measured), "
             f"real time = at most {result['max_drop']:.0%} of frames dropped and the snippets scored.", "",
             "| bundle | runtime | encoder images/s (b8) | cameras held in real time | snippets/s scored "
             "| RSS slope MB/min | loop load at that count: clip / preprocess / head |", "|---|---|---|---|---|---|---|"]
    for best in result["largest_real_time"]:
        row = next((r for r in result["rows"] if r["runtime"] == best["runtime"] and r["clip"] == best["clip"]
                    and r["cameras"] == best["cameras"] and r["real_time"]), None)
        ips = best.get("encoder_images_per_s")
        load = (" / ".join(f"{row['worker_load'].get(s, 0):.0%}" for s in ("clip", "preprocess", "head"))
                if row and "worker_load" in row else "–")
        lines.append(f"| {best['clip']} (encode_every {row['encode_every'] if row else '–'}) | {best['runtime']} | "
                     f"{f'{ips:.1f}' if ips else '–'} | {best['cameras']} | "
                     f"{row['snippets_per_s'] if row else '–'} | {row['rss_slope_mb_per_min'] if row else '–'} | "
                     f"{load} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", default=["tiny", "random"], choices=["tiny", "random"],
                        help="CLIP sources of the random-weight bundles built into --cache")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="soak this bundle instead (e.g. a calibrated one, for --precision int8)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "int8"],
                        help="runtime.precision values to soak, each in turn")
    parser.add_argument("--backend", nargs="+", default=["onnxruntime"], choices=["onnxruntime", "openvino"],
                        help="runtime.backend values to soak, each in turn")
    parser.add_argument("--openvino-precision", nargs="+", default=["auto"], choices=["auto", "f32", "bf16"],
                        help="runtime.openvino_precision values for OpenVINO's float models")
    parser.add_argument("--cameras", nargs="+", default=["1", "2", "4", "8", "16"],
                        help="camera counts to try, ascending, stopping at the first that fails; or 'search' "
                             "(see above; at most --max-cameras)")
    parser.add_argument("--max-cameras", type=int, default=64, help="largest count --cameras search tries")
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
    parser.add_argument("--readme", type=Path, help="also rewrite this README's soak block")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    search = args.cameras == ["search"]
    if not search:
        try:
            args.cameras = [int(c) for c in args.cameras]
        except ValueError:
            parser.error(f"--cameras {' '.join(args.cameras)}: expected camera counts or 'search'")
    args.video = video_or_exit(parser, args.video)
    if args.bundle is not None and not (args.bundle / MANIFEST).is_file():
        parser.error(f"--bundle {args.bundle}: no {MANIFEST}; expected a bundle folder (cplvad export)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("edge.pipeline", "edge.capture", "edge.bundle", "edge.backends.onnxruntime"):
        logging.getLogger(name).setLevel(logging.WARNING)

    if args.child:
        result = soak_one(args.bundle, args.video, args.cameras[0], args.seconds, runtime=runtimes_of(args)[0],
                          queue_size=args.queue_size, max_drop=args.max_drop)
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
        for runtime in runtimes_of(args):
            int8 = int8_models(bundle) if runtime.precision == "int8" else []
            name = runtime_name(runtime, bundle)
            best = {"clip": clip, "precision": runtime.precision, "runtime": name, "bundle": label, "cameras": 0}
            tried: dict[int, bool] = {}
            if search:
                start, best["encoder_images_per_s"] = first_guess(bundle, runtime, args.video)
                log.info("%s %s: encoder %.1f images/s at batch %d: first guess %d camera(s)", clip, name,
                         best["encoder_images_per_s"], args.batch, start)
                counts = searched_counts(tried, start, args.max_cameras)
            else:
                counts = iter(sorted(args.cameras))
            for cameras in tqdm(counts, desc=f"soak {clip} {name}", unit="config"):
                row = {"clip": clip, "precision": runtime.precision, "backend": runtime.backend, "runtime": name,
                       "int8_models": int8, "bundle": label, "encode_every": encode_every,
                       **run_child(args, bundle, cameras, runtime)}
                log.info("%s", row)
                rows.append(row)
                tried[cameras] = row["real_time"]
                if not search and not row["real_time"]:
                    break
            best["cameras"] = max((n for n, ok in tried.items() if ok), default=0)
            largest.append(best)

    print(f"\n{'clip':7} {'runtime':17} {'cams':>4} {'frames/s':>9} {'snip/s':>7} {'scored':>7} {'dropped':>8} "
          f"{'max queue':>9} {'RSS MB':>7} {'MB/min':>7}  real time")
    for r in rows:
        print(f"{r['clip']:7} {r['runtime']:17} {r['cameras']:>4} {r['frames_per_s']:>9.1f} "
              f"{r['snippets_per_s']:>7.2f} {r['scored_fraction']:>7.1%} {r['drop_fraction']:>8.2%} "
              f"{r['max_queue_depth']:>9} {r['rss_mb_end']:>7.0f} {r['rss_slope_mb_per_min']:>7.2f}  "
              f"{'yes' if r['real_time'] else 'NO'}")
    print("largest real-time camera count: "
          + ", ".join(f"{b['clip']} {b['runtime']} {b['cameras']}" for b in largest))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"cpu": cpu_model(), "isa": isa_summary(cpu_flags()), "cores": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
        "video": describe_video(args.video), "seconds": args.seconds, "batch": args.batch, "threads": args.threads,
        "queue_size": args.queue_size, "max_drop": args.max_drop, "largest_real_time": largest, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    if args.readme:
        from bench.report import replace_block

        args.readme.write_text(replace_block(args.readme.read_text(), markdown(result).rstrip("\n"), "soak"))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
