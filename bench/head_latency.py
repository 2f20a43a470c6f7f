"""Student head latency per window: ONNX Runtime FP32 (what the device runs) beside torch eager.

    python bench/head_latency.py [--bundle DIR] [--batches 1 8] [--seconds 5] [--threads N]
        [--out bench/results/head_latency.json]

With ``--bundle`` the bundle's head.onnx and text cache are timed; without it the default student config
(configs/distill/default.yaml, random weights: the speed is real) is exported to a temporary file first.
Inputs are full windows [B, W, 512]. Reports the median ms per call and per window, and prints a table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_seconds  # noqa: E402
from edge.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge.bundle import load_bundle
from edge.configfile import load_config
from train.training.distill_config import DistillConfig
from train.export.head import export_head
from train.models.student import Student

log = logging.getLogger("bench.head_latency")
ROOT = Path(__file__).resolve().parents[1]


def median_ms(call: Callable[[], object], seconds: float) -> float:
    return 1e3 * median_seconds(call, seconds=seconds, warmup=3, min_iters=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: a fresh default student)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/distill/default.yaml")
    parser.add_argument("--classes", type=int, default=14, help="M without a bundle (UCF-Crime: 14)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per measurement")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: runtime's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/head_latency.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        student = None
        if args.bundle is not None:
            bundle = load_bundle(args.bundle)
            head_path, text, window = bundle.file("head"), bundle.text_embeddings, bundle.window
        else:
            cfg = load_config(DistillConfig, args.config).student
            torch.manual_seed(0)
            student = Student(cfg).eval()
            text = np.random.default_rng(0).normal(0, 0.05, (cfg.num_levels, args.classes, 512)).astype(np.float32)
            head_path, window = export_head(student, text, Path(tmp) / "head.onnx"), cfg.window
        backend = OnnxRuntimeBackend(head_path, threads=args.threads)
        rng = np.random.default_rng(0)
        rows = []
        for batch in args.batches:
            x = rng.normal(0, 0.5, (batch, window, 512)).astype(np.float32)
            mask = np.ones((batch, window), bool)
            feeds = {"features": x, "mask": mask, "text": text}
            ort_ms = median_ms(lambda: backend.run(feeds), args.seconds)
            row = {"batch": batch, "window": window, "onnxruntime_ms": ort_ms, "onnxruntime_ms_per_window": ort_ms / batch}
            if student is not None:
                tx, tm, tt = torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(text)
                with torch.inference_mode():
                    row["torch_ms"] = median_ms(lambda: student(tx, tm, tt), args.seconds)
            rows.append(row)
        size_mb = Path(head_path).stat().st_size / 1e6

    lines = [f"{'batch':>6}{'ORT ms':>10}{'ORT ms/window':>15}{'torch ms':>10}"]
    for r in rows:
        lines.append(f"{r['batch']:>6}{r['onnxruntime_ms']:>10.2f}{r['onnxruntime_ms_per_window']:>15.2f}"
                     f"{r.get('torch_ms', float('nan')):>10.2f}")
    result = {"head": str(args.bundle or "default student config"), "onnx_mb": size_mb, "rows": rows,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": args.threads, "onnxruntime": onnxruntime.__version__,
                          "torch": torch.__version__}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("head %.2f MB, window %d\n%s\nwrote %s", size_mb, rows[0]["window"], "\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
