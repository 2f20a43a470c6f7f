"""CLIP image-encoder throughput: torch eager vs ONNX Runtime FP32, plus the preprocessing cost per frame.

    python bench/clip_throughput.py --out bench/results/clip_throughput.json [--sources tiny random]
        [--batches 1 8] [--seconds 5] [--threads N]

``random`` is the real-size ViT-B/16 (random weights: the speed is real, the features are not). Images/s =
batch / median time of one call, after warm-up calls. Prints a table and writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_seconds  # noqa: E402
from edge.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge.preprocess import CLIP_INPUT_NAME, preprocess
from train.models.clip_visual import load_clip_visual
from train.export.clip import export_onnx, sample_frames

log = logging.getLogger("bench.clip_throughput")


def bench_source(source: str, batches: list[int], *, seconds: float, threads: int, workdir: Path) -> list[dict]:
    model = load_clip_visual(source)
    onnx_path = export_onnx(model, workdir / f"{source}.onnx", metadata={"cplvad.clip": source})
    backend = OnnxRuntimeBackend(onnx_path, threads=threads)
    rows = []
    for batch in batches:
        pixels = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
        tensor = torch.from_numpy(pixels)

        def run_torch() -> None:
            with torch.inference_mode():
                model(tensor)

        runs = {"torch eager": run_torch, "onnxruntime fp32": lambda: backend.run({CLIP_INPUT_NAME: pixels})}
        for runtime, call in runs.items():
            sec = median_seconds(call, seconds=seconds)
            rows.append({"source": source, "runtime": runtime, "batch": batch, "ms_per_call": 1e3 * sec,
                         "images_per_s": batch / sec})
            log.info("%s %s batch %d: %.1f images/s", source, runtime, batch, batch / sec)
    return rows


def bench_preprocess(seconds: float) -> dict:
    frames = sample_frames(8)
    sec = median_seconds(lambda: preprocess(frames), seconds=seconds)
    return {"frame": list(frames[0].shape), "batch": len(frames), "ms_per_frame": 1e3 * sec / len(frames),
            "frames_per_s": len(frames) / sec}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    parser.add_argument("--sources", nargs="+", default=["tiny", "random"], help="CLIP sources to time")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--seconds", type=float, default=5.0, help="time spent per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch / ONNX Runtime threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources:
            rows += bench_source(source, args.batches, seconds=args.seconds, threads=args.threads, workdir=Path(tmp))
    prep = bench_preprocess(args.seconds)
    result = {
        "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": args.threads, "load_avg_1min": os.getloadavg()[0],
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "encoder": rows,
        "preprocess": prep,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nCLIP image encoder, {args.threads} threads on {os.cpu_count()} cores")
    print(f"{'source':<8} {'runtime':<18} {'batch':>5} {'ms/call':>9} {'images/s':>9}")
    for r in rows:
        print(f"{r['source']:<8} {r['runtime']:<18} {r['batch']:>5} {r['ms_per_call']:>9.1f} {r['images_per_s']:>9.1f}")
    print(f"preprocess (edge.preprocess, {prep['frame'][1]}x{prep['frame'][0]} frames): "
          f"{prep['ms_per_frame']:.2f} ms/frame, {prep['frames_per_s']:.0f} frames/s")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
