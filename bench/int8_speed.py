"""INT8 vs float on this CPU: calibrate a real-size bundle (random ViT-B/16 + default student) and print the gate.

    python bench/int8_speed.py [--clip random|tiny] [--frames 64] [--rounds 10] [--threads N]
        [--cache bench/results/tmp] [--out bench/results/int8_speed.json]

Runs ``calibration.calibrate`` on a copy of the random-weight bundle (built once into ``--cache`` with
``train.export.bundle.build_random_bundle``), frames from the shared sample videos, and the generated feature
benchmark for the head's AUC / AP. Latencies are ONNX Runtime medians over ``--rounds`` calls per model and batch
(1 and 8), fp32, s8s8 and u8s8 interleaved call by call so machine load affects them alike. The weights are
random, so the speed is real and the accuracy figures only show that quantization preserves the float outputs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

import onnxruntime

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.edge_fps import cached_bundle  # noqa: E402

from calibration.calibrate import CalibrateConfig, calibrate  # noqa: E402
from calibration.gate import format_table  # noqa: E402
from showcase.scenes import write_scene_video  # noqa: E402
from train.data.samples import sample_videos  # noqa: E402

log = logging.getLogger("bench.int8_speed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/int8_speed.py", description=__doc__.split("\n")[0])
    parser.add_argument("--clip", default="random", choices=["random", "tiny"])
    parser.add_argument("--frames", type=int, default=64, help="calibration frames (>= 500 for a deployment)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds per batch size")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: one per core)")
    parser.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    parser.add_argument("--cache", type=Path, default=Path("bench/results/tmp"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/int8_speed.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    videos = sample_videos(fetch=True)
    if not videos:  # offline: calibrate on a rendered scene
        args.cache.mkdir(parents=True, exist_ok=True)
        write_scene_video(args.cache / "scene.mp4")
        videos = [args.cache / "scene.mp4"]

    source = cached_bundle(args.cache, args.clip, encode_every=4)
    bundle = args.cache / f"int8-{args.clip}"
    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(source, bundle)
    if (args.cache / "benchmark").is_dir():  # the generated gate benchmark, kept between runs
        (bundle / "calibration").mkdir(exist_ok=True)
        (bundle / "calibration" / "benchmark").symlink_to((args.cache / "benchmark").resolve())
    cfg = CalibrateConfig(frames=args.frames, head_windows=256, gate_videos=16, speed_rounds=args.rounds,
                          threads=args.threads, method=args.method)
    rows = calibrate(bundle, [str(v) for v in videos], cfg)
    if not (args.cache / "benchmark").exists():
        shutil.move(str(bundle / "calibration" / "benchmark"), args.cache / "benchmark")

    print(f"\n{'model':12} {'flavour':>8} {'batch':>5} {'fp32 ms':>9} {'int8 ms':>9} {'speed-up':>9}")
    for r in rows:
        for b in (1, 8):
            print(f"{r['model']:12} {r['flavour']:>8} {b:>5} {r['ms']['fp32'][b]:>9.2f} {r['ms']['int8'][b]:>9.2f} "
                  f"{r['speedup'][b]:>9.2f}")
    print()
    print(format_table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keep = ("model", "flavour", "method", "cosine_mean", "cosine_p1", "max_abs_diff", "auc_float", "auc_int8",
            "ap_float", "ap_int8", "ap_drop", "passed", "reason", "quantize_s", "ms", "speedup")
    args.out.write_text(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2), "onnxruntime": onnxruntime.__version__},
        "clip": args.clip, "frames": args.frames, "rounds": args.rounds, "threads": args.threads,
        "rows": [{k: r[k] for k in keep if k in r} for r in rows]}, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
