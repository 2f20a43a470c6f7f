"""The CLIP encoder on every CPU runtime of this machine: images/s at batch 1 and 8 and feature cosine vs ORT FP32.

    python bench/encoder_runtimes.py [--clip random|tiny] [--frames 16] [--rounds 3] [--threads 2] [--torch]
        [--cache bench/results/tmp] [--out bench/results/encoder]

Runtimes, in one process on the same input: torch eager (``--torch``), ONNX Runtime FP32 and
INT8 (the u8s8 Q/DQ model ONNX Runtime runs on CPUs), OpenVINO FP32, bf16 (only where the CPU has AMX or
AVX512-BF16: emulated bf16 on an AVX2 CPU would be slower than f32, so it is not timed there) and INT8 (the s8s8
Q/DQ model OpenVINO and TensorRT build from). The encoder is the real-size ViT-B/16 with random weights (the
bundle of ``bench/edge_fps.py``, built once into ``--cache``); its INT8 models are quantized here with
``calibration.quantize`` on ``--frames`` frames of a rendered scene (minmax, per channel). Per batch size: one
warm-up call per runtime, then ``--rounds`` rounds of one call per runtime (interleaved, so other load on the
machine hits all alike); the median call gives images/s. Cosine: each
runtime's features vs ONNX Runtime FP32 on 8 held-out frames (min over them). Writes ``encoder_runtimes.json``
and ``encoder_runtimes.md`` (the README's device table) into ``--out``.

GEMM peak: each runtime and precision also runs one matrix product shaped like the encoder's MLP (8 images' tokens:
[1576, 768] x [768, 3072], its INT8 models quantized the same way); its GFLOP/s is this machine's measured peak
for that runtime, and each encoder row reports the fraction of it that the whole encoder reaches
(:func:`vit_flops`: 2 FLOPs per multiply-add of every matrix product).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.edge_fps import cached_bundle  # noqa: E402
from edge.backends import cosine_rows  # noqa: E402
from calibration.quantize import FeedReader, batched_feeds, quantize  # noqa: E402
from edge.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge.backends.openvino import available, cpu_flags, cpu_model, has_native_bf16, isa_summary  # noqa: E402
from edge.preprocess import CLIP_INPUT_NAME, preprocess  # noqa: E402
from showcase.scenes import read_video, write_scene_video  # noqa: E402

log = logging.getLogger("bench.encoder_runtimes")
Encode = Callable[[np.ndarray], np.ndarray]  # pixels [N, 3, 224, 224] -> features [N, 512]


def scene_pixels(cache: Path, count: int) -> np.ndarray:
    """``count`` evenly spaced frames of a rendered scene (768x432), preprocessed -> [count, 3, 224, 224]."""
    video = cache / "scene.mp4"
    if not video.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        write_scene_video(video)
    frames = read_video(video)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return preprocess([frames[i] for i in picks])


def int8_models(clip: Path, calib: np.ndarray) -> dict[str, Path]:
    """The s8s8 and u8s8 Q/DQ models of ``clip``, quantized on ``calib`` pixels once (kept beside it)."""
    out = {}
    for flavour in ("s8s8", "u8s8"):
        target = clip.with_name(f"{clip.stem}.{flavour}.bench{len(calib)}.onnx")
        if not target.is_file():
            t0 = time.perf_counter()
            reader = FeedReader(batched_feeds({CLIP_INPUT_NAME: calib}, 8))
            quantize(clip, target, reader, flavour=flavour)
            log.info("quantized %s in %.0f s", target.name, time.perf_counter() - t0)
        out[flavour] = target
    return out


def vit_flops(*, layers: int = 12, width: int = 768, mlp: int = 3072, image: int = 224, patch: int = 16,
              out: int = 512) -> float:
    """FLOPs (2 per multiply-add) of one image through a CLIP ViT's matrix products: patch embedding, per layer
    the q/k/v/output projections, attention scores and mix, and the MLP, then the projection to ``out``."""
    patches = (image // patch) ** 2
    tokens = patches + 1  # + the class token
    embed = patches * (3 * patch * patch) * width
    per_layer = tokens * 4 * width * width + 2 * tokens * tokens * width + 2 * tokens * width * mlp
    return 2.0 * (embed + layers * per_layer + width * out)


GEMM_SHAPE = (8 * 197, 768, 3072)  # [M, K] x [K, N]: the MLP's first product for a batch of 8 images


def gemm_model(path: Path, shape: tuple[int, int, int] = GEMM_SHAPE, seed: int = 0) -> Path:
    """One float MatMul ``x [M, K] @ w [K, N]`` (w a random initializer) saved as ONNX at ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    w = np.random.default_rng(seed).normal(0, 0.02, (k, n)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def gemm_models(cache: Path) -> dict[str, Path]:
    """The GEMM model in float and its s8s8 / u8s8 Q/DQ flavours (quantized as the encoder's)."""
    fp32 = cache / "gemm-v2" / "gemm.onnx"
    if not fp32.is_file():
        gemm_model(fp32)
    x = np.random.default_rng(1).normal(size=(GEMM_SHAPE[0], GEMM_SHAPE[1])).astype(np.float32)
    out = {"fp32": fp32}
    for flavour in ("s8s8", "u8s8"):
        target = fp32.with_name(f"gemm.{flavour}.onnx")
        if not target.is_file():
            quantize(fp32, target, FeedReader([{"x": x}]), flavour=flavour, keep_float=[])  # the product itself
        out[flavour] = target
    return out


def gemm_gflops(run: Callable[[np.ndarray], object], rounds: int, shape: tuple[int, int, int] = GEMM_SHAPE
                ) -> float:
    """GFLOP/s of ``run`` on one [M, K] input (one warm-up call, the median of ``rounds`` calls)."""
    m, k, n = shape
    x = np.random.default_rng(2).normal(size=(m, k)).astype(np.float32)
    run(x)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return 2.0 * m * k * n / float(np.median(times)) / 1e9


def torch_gemm() -> Callable[[np.ndarray], np.ndarray]:
    """The GEMM in torch eager (fp32, the threads set by :func:`torch_encoder`)."""
    import torch

    w = torch.from_numpy(np.random.default_rng(0).normal(0, 0.02, GEMM_SHAPE[1:]).astype(np.float32))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return (torch.from_numpy(x) @ w).numpy()

    return run


def torch_encoder(clip: str, threads: int) -> Encode:
    import torch

    from train.models.clip_visual import load_clip_visual

    torch.set_num_threads(threads)
    model = load_clip_visual(clip, seed=0)  # the same seed as the bundle's export: the same weights

    def encode(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(pixels)).numpy()

    return encode


def time_encoders(encoders: list[Encode], pixels: np.ndarray, batches: tuple[int, ...], rounds: int
                  ) -> list[dict[int, float]]:
    """Images/s of each encoder per batch size: one warm-up call each, then ``rounds`` rounds of one call per
    encoder (interleaved, so load from other processes hits all alike); the median call counts."""
    times: list[dict[int, list[float]]] = [{b: [] for b in batches} for _ in encoders]
    for b in batches:
        x = np.ascontiguousarray(pixels[np.arange(b) % len(pixels)])
        for encode in encoders:
            encode(x)
        for _ in range(rounds):
            for encode, mine in zip(encoders, times):
                t0 = time.perf_counter()
                encode(x)
                mine[b].append(time.perf_counter() - t0)
    return [{b: b / float(np.median(v)) for b, v in mine.items()} for mine in times]


def preprocess_ms(cache: Path, rounds: int = 50) -> dict[str, float]:
    """Per-frame ms, one OpenCV thread, on 768x432 frames of a rendered scene: decoding (H.264 / mp4v, read),
    this runtime's preprocessing, and the one-step INTER_AREA resize it replaces."""
    video = cache / "scene-768x432.mp4"
    if not video.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        write_scene_video(video, size=(768, 432))
    cv2.setNumThreads(1)
    cap = cv2.VideoCapture(str(video))
    frames, t0 = [], time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    decode = 1000 * (time.perf_counter() - t0) / max(len(frames), 1)
    cap.release()

    def median_ms(fn: Callable[[np.ndarray], object]) -> float:
        times = []
        for i in range(rounds):
            frame = frames[i % len(frames)]
            t = time.perf_counter()
            fn(frame)
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))

    return {"frame": "768x432", "decode_read_ms": round(decode, 3),
            "preprocess_ms": round(median_ms(lambda f: preprocess([f])), 3),
            "one_step_inter_area_resize_ms": round(median_ms(
                lambda f: cv2.resize(f, (398, 224), interpolation=cv2.INTER_AREA)), 3)}


def markdown(result: dict) -> str:
    """The device table: one row per runtime."""
    size = "real-size ViT-B/16" if result["clip"] == "random" else f"{result['clip']} CLIP"
    lines = [f"CLIP image encoder ({size}, random weights) on {result['cpu']} ({result.get('isa', '')}; "
             f"{result['threads']} threads, {result['cores']} cores, load {result['load_average_1min']}); "
             f"{result['bf16']}. GEMM peak: one [1576, 768] x [768, 3072] product in the same runtime and "
             "precision; the encoder's share of it counts 2 FLOPs per multiply-add "
             f"({vit_flops() / 1e9:.1f} GFLOP per image).", "",
             "| runtime | precision | images/s b1 | images/s b8 | x ORT FP32 (b8) | min cosine vs ORT FP32 "
             "| GEMM peak GFLOP/s | encoder GFLOP/s (b8) | of GEMM peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = next(r for r in result["rows"] if r["runtime"] == "onnxruntime" and r["precision"] == "fp32")
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['runtime']} | {r['precision']} | - | - | - | {r['skipped']} | - | - | - |")
            continue
        ips = r["images_per_s"]
        share = (f"{r['gemm_gflops']:.0f} | {r['encoder_gflops_b8']:.0f} | {r['fraction_of_gemm_peak']:.0%}"
                 if "fraction_of_gemm_peak" in r else "- | - | -")
        lines.append(f"| {r['runtime']} | {r['precision']} | {ips['1']:.2f} | {ips['8']:.2f} | "
                     f"{ips['8'] / base['images_per_s']['8']:.2f} | {r['min_cosine']:.4f} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/encoder_runtimes.py", description=__doc__.split("\n")[0])
    parser.add_argument("--clip", default="random", choices=["random", "tiny"])
    parser.add_argument("--frames", type=int, default=16, help="calibration frames of the INT8 models")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per runtime and batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--torch", action="store_true", help="also time torch eager (slow: minutes on 2 cores)")
    parser.add_argument("--cache", type=Path, default=Path("bench/results/tmp"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/encoder"))
    parser.add_argument("--readme", type=Path, help="also rewrite this README's encoder block")
    parser.add_argument("--preprocess-only", action="store_true",
                        help="only time decoding and preprocessing of 768x432 frames (preprocess.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pre = preprocess_ms(args.cache) | {"cpu": cpu_model(), "load_average_1min": round(os.getloadavg()[0], 2)}
    log.info("per 768x432 frame, one thread: decode %.2f ms, preprocess %.2f ms (one-step INTER_AREA resize alone "
             "%.2f ms)", pre["decode_read_ms"], pre["preprocess_ms"], pre["one_step_inter_area_resize_ms"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preprocess.json").write_text(json.dumps(pre, indent=2) + "\n")
    if args.preprocess_only:
        return 0

    clip = cached_bundle(args.cache, args.clip, encode_every=4) / "clip_visual.onnx"
    pixels = scene_pixels(args.cache, args.frames + 8)
    calib, held = pixels[:args.frames], pixels[args.frames:]  # cosine on frames the INT8 models never saw
    int8 = int8_models(clip, calib)
    flags = cpu_flags()
    native_bf16 = has_native_bf16(flags)
    bf16_note = (f"bf16 native ({'AMX' if 'amx_bf16' in flags else 'AVX512-BF16, no AMX'})" if native_bf16 else
                 "no bf16: the CPU has neither AMX nor AVX512-BF16 (" +
                 ("AVX2 only" if "avx2" in flags and "avx512f" not in flags else "no native bf16") +
                 "), so OpenVINO runs f32 there")

    gemm = gemm_models(args.cache)
    Runner = Callable[[np.ndarray], np.ndarray]

    def on(backend_class, path: Path, **options) -> Callable[[], Runner]:  # noqa: ANN001
        def make() -> Runner:
            backend = backend_class(path, threads=args.threads, **options)
            name = backend.inputs[0].name
            return lambda x: next(iter(backend.run({name: x}).values()))
        return make

    # (runtime, precision, encoder maker or the reason it is not timed, GEMM maker)
    runtimes: list[tuple[str, str, Callable[[], Runner] | str, Callable[[], Runner] | None]] = []
    if args.torch:
        runtimes.append(("torch eager", "fp32", lambda: torch_encoder(args.clip, args.threads), torch_gemm))
    runtimes += [("onnxruntime", "fp32", on(OnnxRuntimeBackend, clip), on(OnnxRuntimeBackend, gemm["fp32"])),
                 ("onnxruntime", "int8 (u8s8)", on(OnnxRuntimeBackend, int8["u8s8"]),
                  on(OnnxRuntimeBackend, gemm["u8s8"]))]
    if available():
        from edge.backends.openvino import OpenVINOBackend

        def ov(path: Path, precision: str) -> Callable[[], Runner]:
            return on(OpenVINOBackend, path, precision=precision, cache_dir=args.cache / "openvino_cache")

        runtimes += [("openvino", "fp32", ov(clip, "f32"), ov(gemm["fp32"], "f32")),
                     ("openvino", "bf16", ov(clip, "bf16"), ov(gemm["fp32"], "bf16")) if native_bf16 else
                     ("openvino", "bf16", "not timed: no AMX / AVX512-BF16", None),
                     ("openvino", "int8 (s8s8)", ov(int8["s8s8"], "f32"), ov(gemm["s8s8"], "f32"))]
    else:
        runtimes.append(("openvino", "all", "not installed (pip install 'cplvad-edge[openvino]')", None))

    rows, encoders, reference = [], [], None
    for name, precision, make, make_gemm in runtimes:
        if isinstance(make, str):
            rows.append({"runtime": name, "precision": precision, "skipped": make})
            continue
        t0 = time.perf_counter()
        encode = make()
        load_s = time.perf_counter() - t0
        features = encode(held)
        reference = features if (name, precision) == ("onnxruntime", "fp32") else reference
        peak = gemm_gflops(make_gemm(), max(args.rounds, 5))
        rows.append({"runtime": name, "precision": precision, "load_s": round(load_s, 2), "features": features,
                     "gemm_gflops": round(peak, 1)})
        encoders.append(encode)
        log.info("%s %s: loaded in %.1f s; GEMM %s: %.0f GFLOP/s", name, precision, load_s, GEMM_SHAPE, peak)
    timed = [row for row in rows if "features" in row]
    flops = vit_flops() if args.clip == "random" else None
    for row, speed in zip(timed, time_encoders(encoders, held, (1, 8), args.rounds)):
        row["images_per_s"] = {str(b): round(v, 3) for b, v in speed.items()}
        row["min_cosine"] = round(float(cosine_rows(row.pop("features"), reference).min()), 6)
        if flops is not None:
            row["encoder_gflops_b8"] = round(speed[8] * flops / 1e9, 1)
            row["fraction_of_gemm_peak"] = round(row["encoder_gflops_b8"] / row["gemm_gflops"], 3)
        log.info("%s %s: %.2f images/s b1, %.2f b8", row["runtime"], row["precision"], speed[1], speed[8])

    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__}
    if available():
        import openvino

        versions["openvino"] = openvino.__version__
    result = {"cpu": cpu_model(), "isa": isa_summary(flags), "cores": os.cpu_count(), "threads": args.threads,
              "load_average_1min": round(os.getloadavg()[0], 2), "native_bf16": native_bf16, "bf16": bf16_note,
              "clip": args.clip, "calibration_frames": args.frames, "rounds": args.rounds, "versions": versions,
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoder_runtimes.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "encoder_runtimes.md").write_text(markdown(result))
    if args.readme:
        from bench.report import replace_block

        args.readme.write_text(replace_block(args.readme.read_text(), markdown(result).rstrip("\n"), "encoder"))
    print(markdown(result))
    log.info("wrote %s", args.out / "encoder_runtimes.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
