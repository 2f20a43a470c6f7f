"""Export a distilled student run to a model bundle the device loads (``edge.bundle``).

    cplvad export --run STUDENT_RUN --out bundle/ --clip SOURCE [--encode-every K]

``--clip`` is required (``--clip random`` builds on random weights, for demos and tests only) and must be the
encoder the run's features were extracted with, and ``--encode-every`` (default: the features' policy, else
``edge.snippets.DEFAULT_ENCODE_EVERY``) their snippet policy, as recorded by the extractor
(``train.data.provenance``); a mismatch is refused with both named.

Writes ``head.onnx`` (the student, both branches; dynamic batch and class count, fixed window), ``clip_visual.onnx``
(``train.export.clip``; reused when the folder already holds an intact export of the same source),
``text_embeddings.npz`` (the run's cache) and ``manifest.json`` with the sha256 of every file. The head is verified:
ONNX Runtime vs torch on real-length windows of the run's test videos (filling and full ring-buffer windows,
batch 1 and 8); the largest difference is printed and must stay within ``MAX_ABS_DIFF``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
import transformers

from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.bundle import MANIFEST, SCHEMA_VERSION, Manifest, write_manifest
from edge.configfile import load_config, run_main
from edge.preprocess import CLIP_VIT_B16
from edge.ringbuffer import gather_windows, window_index
from edge.smoother import SmootherParams
from edge.snippets import DEFAULT_ENCODE_EVERY, EMBED_DIM, FRAMES_PER_SNIPPET, encoded_offsets
from train.data.provenance import check_export, label, read_run
from train.models.clip_source import describe, identity, is_random
from train.data.release import load_split
from train.training.distill_config import DistillConfig
from train.export.clip import OPSET, export_clip, matches
from train.export.head import export_head
from train.evaluation.stream import WARMUP_AUTO, Warmup, calibrated_smoother, parse_warmup
from train.models.student import Student, StudentConfig
from train.models.text import load_text_embeddings

log = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4  # on probabilities, ONNX Runtime vs torch
HEAD_FILE, CLIP_FILE, TEXT_FILE = "head.onnx", "clip_visual.onnx", "text_embeddings.npz"


@dataclass(frozen=True)
class HeadCheck:
    """ONNX Runtime vs torch on the same windows."""

    windows: int
    max_abs_diff_binary: float
    max_abs_diff_classes: float

    @property
    def max_abs_diff(self) -> float:
        return max(self.max_abs_diff_binary, self.max_abs_diff_classes)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF


def sample_windows(features: list[np.ndarray], window: int, per_video: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Ring-buffer windows of real videos: per video the window after snippets 1, W/2, W and the last one."""
    xs, masks = [], []
    for feats in features:
        n = feats.shape[0]
        index, mask, _ = window_index(n, window)
        for t in sorted({0, min(window // 2, n - 1), min(window - 1, n - 1), n - 1})[:per_video]:
            xs.append(gather_windows(feats, index[t]))
            masks.append(mask[t])
    return np.stack(xs).astype(np.float32), np.stack(masks)


def verify_head(student: Student, onnx_path: Path, x: np.ndarray, mask: np.ndarray, text: np.ndarray) -> HeadCheck:
    """ONNX Runtime vs torch on windows x [N, W, 512], run at batch 1 and in batches of 8."""
    with torch.no_grad():
        ref_b, ref_c = (t.numpy() for t in student(torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(text)))
    backend = OnnxRuntimeBackend(onnx_path)
    diff_b = diff_c = 0.0
    for size in (1, 8):
        for s in range(0, len(x), size):
            out = backend.run({"features": x[s:s + size], "mask": mask[s:s + size], "text": text})
            diff_b = max(diff_b, float(np.abs(out["binary"] - ref_b[s:s + size]).max()))
            diff_c = max(diff_c, float(np.abs(out["classes"] - ref_c[s:s + size]).max()))
    return HeadCheck(len(x), diff_b, diff_c)


def real_windows(run_cfg_data: str | None, feature_root: str | None, window: int, videos: int = 4,
                 dataset: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Real-length windows from the run's test videos (noise windows of plausible scale when they are absent)."""
    try:
        split = load_split(str(run_cfg_data), "test", dataset, feature_root)
        picks = np.linspace(0, len(split) - 1, min(videos, len(split))).astype(int)
        return sample_windows([split.videos[i].load(0) for i in picks], window)
    except (FileNotFoundError, ValueError, TypeError) as err:
        log.warning("test features unavailable (%s): verifying the head on random windows", err)
        rng = np.random.default_rng(0)
        return sample_windows([rng.normal(0, 0.5, (n, 512)).astype(np.float32) for n in (5, 3 * window)], window)


def export_bundle(run: str | Path, out: str | Path, *, clip: str, encode_every: int | None = None,
                  seed: int = 0, opset: int = OPSET, threshold_quantile: float = 0.995,
                  warmup: Warmup = WARMUP_AUTO) -> Manifest:
    """Write and verify a bundle from a student run; returns its manifest (the bundle is re-loaded to check).

    ``encode_every`` None: the snippet policy the run's features were extracted with, else the default."""
    start = time.perf_counter()
    run, out = Path(run), Path(out)
    provenance = read_run(run)
    recorded = ((provenance or {}).get("features") or {}).get("encode_every")
    if encode_every is None:
        encode_every = recorded or DEFAULT_ENCODE_EVERY
    encoded_offsets(encode_every)  # ValueError unless 1..16
    clip_identity = identity(clip, seed)
    check_export(provenance, clip_identity, encode_every, run=run, clip_source=clip)
    text_identity = (provenance or {}).get("text")
    if text_identity and text_identity.get("random"):
        log.warning("!!! the run %s learned its category prompts through %s: category names are meaningless "
                    "outside tests and demos !!!", run, label(text_identity))
    student, meta = Student.load_run(run)
    cfg = load_config(DistillConfig, run / "config.yaml")
    text = load_text_embeddings(run / TEXT_FILE)
    if list(text.classes) != list(meta["classes"]):
        raise ValueError(f"{run / TEXT_FILE}: classes {text.classes} differ from the student's {meta['classes']}")
    out.mkdir(parents=True, exist_ok=True)
    stale = out / MANIFEST
    if stale.exists():
        stale.unlink()  # a half-written bundle must not look valid

    head = export_head(student, text.embeddings, out / HEAD_FILE, opset=opset,
                       metadata={"cplvad.classes": json.dumps(list(text.classes))})
    x, mask = real_windows(cfg.data, cfg.feature_root, student.config.window, dataset=meta["dataset"])
    check = verify_head(student, head, x, mask, text.embeddings)
    log.info("head: ONNX Runtime vs torch on %d real-length windows (batch 1 and 8): max |diff| binary %.2e, "
             "classes %.2e; budget %.0e", check.windows, check.max_abs_diff_binary, check.max_abs_diff_classes,
             MAX_ABS_DIFF)
    if not check.ok:
        raise RuntimeError(f"{head}: ONNX Runtime disagrees with torch beyond {MAX_ABS_DIFF}: {check}")

    smoother, threshold = calibrated_smoother(student, text.embeddings, cfg.data, cfg.feature_root,
                                              meta["dataset"], threshold_quantile, warmup)
    clip_path = out / CLIP_FILE
    if matches(clip_path, clip, seed):
        log.info("%s already holds the CLIP image encoder of %s: kept", clip_path, describe(clip))
    else:
        export_clip(clip, clip_path, seed=seed, opset=opset)
    if (run / TEXT_FILE).resolve() != (out / TEXT_FILE).resolve():
        shutil.copyfile(run / TEXT_FILE, out / TEXT_FILE)

    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != MANIFEST)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    created = datetime.now(timezone.utc)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        version=f"{run.name}-{created:%Y%m%d-%H%M%S}",
        created=created.isoformat(timespec="seconds"),
        dataset=meta["dataset"],
        classes=text.classes,
        snippet={"frames_per_snippet": FRAMES_PER_SNIPPET, "encode_every": encode_every, "embed_dim": EMBED_DIM},
        preprocess=CLIP_VIT_B16.to_dict(),
        window=student.config.window,
        levels=student.config.num_levels,
        smoother=asdict(smoother),
        clip={"source": describe(clip), "random": is_random(clip), "identity": clip_identity, "text": text_identity},
        models={"head": {"file": HEAD_FILE, "precision": "fp32"},
                "clip_visual": {"file": CLIP_FILE, "precision": "fp32"}},
        text_embeddings={"file": TEXT_FILE, "hash": text.hash},
        metrics={k: metrics[k] for k in ("teacher", "student_offline", "student_streaming") if k in metrics}
        | {"head_check": asdict(check) | {"budget": MAX_ABS_DIFF}, "threshold": threshold},
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                  "transformers": transformers.__version__, "opset": opset},
        files={},
    )
    manifest = write_manifest(out, manifest, rehash=files).manifest  # the device's own loader must accept it
    size = sum((out / name).stat().st_size for name in files) / 1e6
    log.info("bundle %s: %s (%.1f MB) in %.1f s; next: cplvad run --bundle %s --camera 0", out,
             ", ".join(files), size, time.perf_counter() - start, out)
    return manifest


def build_random_bundle(out: str | Path, *, clip: str, student: StudentConfig, classes: tuple[str, ...],
                        encode_every: int, smoother: SmootherParams, seed: int = 0) -> Path:
    """A bundle of random-weight models (``clip``: 'tiny' or 'random'), for tests and benchmarks: the CLIP export,
    :func:`export_head` and the one manifest writer, without a distilled run (which :func:`export_bundle` needs)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    export_clip(clip, out / CLIP_FILE, seed=seed, verify_frames=2)
    (out / CLIP_FILE).with_suffix(".json").unlink()
    levels = student.num_levels
    text = np.random.default_rng(seed).normal(size=(levels, len(classes), EMBED_DIM)).astype(np.float32)
    torch.manual_seed(seed)
    export_head(Student(student).eval(), text, out / HEAD_FILE)
    np.savez(out / TEXT_FILE, classes=np.array(classes), embeddings=text, hash=np.array(f"random-{seed}"),
             source=np.array(clip))
    manifest = Manifest(
        schema_version=SCHEMA_VERSION, version=f"random-{seed}", created="2026-01-01T00:00:00+00:00", dataset="ucf",
        classes=classes, snippet={"frames_per_snippet": FRAMES_PER_SNIPPET, "encode_every": encode_every,
                                  "embed_dim": EMBED_DIM},
        preprocess=CLIP_VIT_B16.to_dict(), window=student.window, levels=levels,
        smoother=asdict(smoother), clip={"source": clip, "random": True},
        models={"head": {"file": HEAD_FILE, "precision": "fp32"},
                "clip_visual": {"file": CLIP_FILE, "precision": "fp32"}},
        text_embeddings={"file": TEXT_FILE, "hash": f"random-{seed}"}, files={})
    write_manifest(out, manifest, rehash=(HEAD_FILE, CLIP_FILE, TEXT_FILE))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad export", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="student run folder (train.training.distill's out)")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    parser.add_argument("--clip", help="CLIP image encoder the features were extracted with: a Hugging Face id "
                                       "(openai/clip-vit-base-patch16), a local HF CLIP folder, or explicitly 'random' "
                                       "/ 'tiny' (random weights: demos and tests only)")
    parser.add_argument("--encode-every", type=int, metavar="K",
                        help="encode frames 0, K, 2K, ... of each 16-frame snippet (1..16); default: the policy the "
                             f"run's features were extracted with, else {DEFAULT_ENCODE_EVERY}")
    parser.add_argument("--seed", type=int, default=0, help="weights seed for 'random' / 'tiny' CLIP")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--threshold-quantile", type=float, default=0.995, metavar="Q",
                        help="smoother threshold = this quantile of the student's scores on the normal training "
                             "videos (0: the CAR default 0.5)")
    parser.add_argument("--warmup", type=parse_warmup, default=WARMUP_AUTO, metavar="auto|N",
                        help="no event starts in a stream's first N snippets: a camera that comes online (or a "
                             "stream that restarts) alerts only once its window holds N snippets of context; auto "
                             "(default): the fewest after which the normal training videos' young snippets reach "
                             "the threshold no more often than settled ones")
    args = parser.parse_args(argv)
    if not 0 <= args.threshold_quantile < 1:
        parser.error(f"--threshold-quantile {args.threshold_quantile}: expected 0 <= Q < 1")
    if args.clip is None:
        parser.error("--clip is required: the CLIP the run's features were extracted with (e.g. "
                     "openai/clip-vit-base-patch16 or a local folder), or '--clip random' for a demo bundle")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        export_bundle(args.run, args.out, clip=args.clip, encode_every=args.encode_every, seed=args.seed,
                      opset=args.opset, threshold_quantile=args.threshold_quantile, warmup=args.warmup)
    except (FileNotFoundError, ValueError) as err:  # the user's input: run, CLIP source, policy
        log.error("%s", err)
        return 2
    except RuntimeError as err:  # a verification that failed
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":  # an alias of `cplvad export`
    raise SystemExit(run_main(main, prog="cplvad export"))
