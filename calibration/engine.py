"""TensorRT engines for the Jetson, built on the device from a calibrated bundle (``make engine``).

    cplvad engine --bundle bundle/ [--precision auto|int8|fp16|fp32] [--max-batch 8]
        [--workspace-mb 1024] [--timing-cache bundle/calibration/timing.cache]

Per model: ``auto`` builds INT8 from the ``s8s8`` Q/DQ ONNX when the manifest's gate passed it (explicit
quantization: the scales are in the graph, no calibrator runs here; FP16 is enabled too for the layers kept
float), else FP16 from the float ONNX and says why. Optimisation profile: batch 1..``max_batch`` (opt = the
runtime's clip batch for CLIP, 1 for the head); the head's class axis 2..``max_classes``. Engines are written
next to the bundle's models as ``<model>.<precision>.trt<X.Y>.sm<NN>.engine`` with a header
(``edge.backends.tensorrt``): TensorRT version, GPU, precision and the source ONNX's sha256. A timing cache
makes rebuilds fast. Written against TensorRT 10.x; 8.6 differences (explicit-batch flag) are handled.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.backends.tensorrt import EngineHeader, engine_name, gpu_info, read_engine, write_engine
from edge.bundle import Bundle, file_sha256, load_bundle
from edge.configfile import run_main
from edge.preprocess import CLIP_INPUT_NAME

log = logging.getLogger(__name__)

MODELS = ("clip_visual", "head")


@dataclass(frozen=True)
class BuildPlan:
    """What to build for one model."""

    model: str
    precision: str  # "int8" | "fp16" | "fp32"
    onnx: Path
    reason: str


Shape = tuple[int, ...]


def plan_builds(bundle: Bundle, precision: str = "auto") -> list[BuildPlan]:
    """The engine per model: INT8 from the s8s8 Q/DQ model where the gate passed it (``auto``), else FP16."""
    if precision not in ("auto", "int8", "fp16", "fp32"):
        raise ValueError(f"precision {precision!r}; expected auto, int8, fp16 or fp32")
    plans = []
    for model in MODELS:
        entry = bundle.manifest.models[model]
        s8s8 = ((entry.int8 or {}).get("flavours") or {}).get("s8s8")
        if precision in ("auto", "int8") and s8s8 and s8s8.get("passed"):
            plans.append(BuildPlan(model, "int8", bundle.path / s8s8["file"], "passed the INT8 gate"))
        elif precision == "int8":
            why = s8s8["reason"] if s8s8 else "not calibrated (run `make calibrate` first)"
            raise ValueError(f"{model}: INT8 requested but {why}")
        elif precision in ("auto", "fp16"):
            why = ("failed the INT8 gate: " + s8s8["reason"]) if s8s8 else "no INT8 calibration in the manifest"
            plans.append(BuildPlan(model, "fp16", bundle.file(model), why if precision == "auto" else "requested"))
        else:
            plans.append(BuildPlan(model, "fp32", bundle.file(model), "requested"))
    return plans


def profile_shapes(model: str, bundle: Bundle, *, max_batch: int, opt_batch: int, max_classes: int
                   ) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Optimisation profile per input: (min, opt, max) shapes."""
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt batch {opt_batch} must be within 1..max batch {max_batch}")
    if model == "clip_visual":
        size = bundle.preprocess().size
        return {CLIP_INPUT_NAME: ((1, 3, size, size), (opt_batch, 3, size, size), (max_batch, 3, size, size))}
    classes = len(bundle.classes)
    if classes > max_classes:
        raise ValueError(f"bundle has {classes} classes > max_classes {max_classes}")
    W, L = bundle.window, bundle.levels
    return {"features": ((1, W, 512), (opt_batch, W, 512), (max_batch, W, 512)),
            "mask": ((1, W), (opt_batch, W), (max_batch, W)),
            "text": ((L, 2, 512), (L, classes, 512), (L, max_classes, 512))}


def build_engine(plan: BuildPlan, profile: dict[str, tuple[Shape, Shape, Shape]], out_dir: Path, *,
                 workspace_mb: int = 1024, timing_cache: Path | None = None) -> Path:
    """Build and write one engine with the TensorRT Python API; returns its path."""
    import tensorrt as trt  # type: ignore[import-not-found]

    gpu, sm = gpu_info()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(plan.onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {plan.onnx}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if plan.precision in ("int8", "fp16"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 engines: layers kept float run in FP16
    if plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ scales; no calibrator
    opt = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile.items():
        opt.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {plan.model} ({plan.precision}) from {plan.onnx}")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    header = EngineHeader(model=plan.model, precision=plan.precision, tensorrt=trt.__version__, gpu=gpu, sm=sm,
                          source_onnx=plan.onnx.name, source_sha256=file_sha256(plan.onnx),
                          profiles={k: [list(s) for s in v] for k, v in profile.items()},
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path = write_engine(out_dir / engine_name(plan.model, plan.precision, trt.__version__, sm), header,
                        bytes(serialized))
    read_engine(path)  # round trip of the header
    log.info("%s: %s engine from %s (%s) in %.0f s, %.1f MB", path.name, plan.precision, plan.onnx.name, plan.reason,
             time.perf_counter() - start, path.stat().st_size / 1e6)
    return path


def build_all(bundle_dir: str | Path, *, precision: str = "auto", max_batch: int = 8, clip_batch: int = 8,
              max_classes: int = 64, workspace_mb: int = 1024, timing_cache: Path | None = None) -> list[Path]:
    bundle = load_bundle(bundle_dir)
    timing_cache = timing_cache or bundle.path / "calibration" / "timing.cache"
    paths = []
    for plan in plan_builds(bundle, precision):
        opt = min(clip_batch, max_batch) if plan.model == "clip_visual" else 1
        profile = profile_shapes(plan.model, bundle, max_batch=max_batch, opt_batch=opt, max_classes=max_classes)
        paths.append(build_engine(plan, profile, bundle.path, workspace_mb=workspace_mb, timing_cache=timing_cache))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad engine", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--precision", default="auto", choices=["auto", "int8", "fp16", "fp32"])
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--clip-batch", type=int, default=8, help="the runtime's CLIP batch (profile optimum)")
    parser.add_argument("--max-classes", type=int, default=64)
    parser.add_argument("--workspace-mb", type=int, default=1024)
    parser.add_argument("--timing-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        paths = build_all(args.bundle, precision=args.precision, max_batch=args.max_batch, clip_batch=args.clip_batch,
                          max_classes=args.max_classes, workspace_mb=args.workspace_mb, timing_cache=args.timing_cache)
    except ImportError as err:
        log.error("TensorRT / cuda-python not importable (%s): build engines on the Jetson (JetPack 6.1+: TensorRT 10.3)",
                  err)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return 1
    log.info("engines: %s; next: cplvad run --bundle %s --backend tensorrt --camera 0",
             ", ".join(p.name for p in paths), args.bundle)
    return 0


if __name__ == "__main__":  # an alias of `cplvad engine`
    raise SystemExit(run_main(main, prog="cplvad engine"))
