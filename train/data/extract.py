"""CLIP snippet features of your own videos, in the VadCLIP format the training code reads.

    cplvad extract --videos DIR_OR_LIST --out DIR --clip SOURCE [--crops 1|5|10] [--encode-every K]
        [--backend auto|torch|onnx|openvino] [--labels FILE] [--batch N] [--shard I/N] [--merge]
    torchrun --nproc-per-node 4 -m train.data.extract --videos ... --out DIR --clip SOURCE   # one shard per rank

Writes ``<out>/<video name>__<k>.npy`` float32 [T, 512] per video and crop, T = frames // 16, and
``<out>/list.csv`` (``path,label``, one row per crop file, absolute paths as in the VadCLIP lists). Frames go
through the device's own code: edge.preprocess, then edge.snippets (mean of the encoded frames' embeddings).

Crops (the ten-crop convention of the VadCLIP/I3D feature releases, with crop 0 = what the device sees):
  * crop 0: the CLIP centre crop (shorter side resized to 224, centred 224 x 224);
  * crops 1-4: the top-left, top-right, bottom-left, bottom-right 224 x 224 corners of the frame resized to a
    shorter side of 256 (corners of the 224 image would repeat each other on the short axis);
  * crops 5-9: crops 0-4 mirrored left-right.
``--crops 1`` writes crop 0, ``5`` crops 0-4, ``10`` all.

Labels: ``--labels FILE`` holds ``name label`` per line (or ``name,label`` CSV; ``#`` comments), name = video
file name without extension; labels are checked against ``--dataset`` (ucf names, or xd codes such as B2-0-0).
Videos not listed get ``--default-label``, by default the dataset's normal class (``Normal`` / ``A``), which
is the right label for footage of the normal scene a deployment learns from.

``--clip`` is required: a Hugging Face id (``openai/clip-vit-base-patch16``, read through the HF cache; offline
with ``HF_HUB_OFFLINE=1``), a local Hugging Face CLIP folder, or explicitly ``random`` / ``tiny`` (tests, timing).
``--encode-every`` defaults to ``edge.snippets.DEFAULT_ENCODE_EVERY``, the device's policy.

Backends (``--backend``, default ``auto``): torch on a GPU; on a CPU OpenVINO where it is installed, which
computes in bf16 where the CPU has AMX or AVX512-BF16 (2.2x ONNX Runtime FP32 on an AVX512-BF16 CPU,
``cplvad bench encoder-runtimes``) after checking on 8 frames of the first video that its features stay within
cosine ``PARITY_MIN_COSINE`` (0.999) of ONNX Runtime FP32 (else it runs f32); ONNX Runtime (``onnx``) elsewhere.

Resumable: a video whose crop files all exist is skipped (files are written atomically); the run's settings,
with the CLIP weights' identity (repo id + revision, or the weight files' sha256), are kept in
``<out>/extract.json`` and a rerun with other settings is refused. Training and export read that record
(``train.data.provenance``). Unreadable videos are logged, the others still processed, and the exit code is 1.

Sharding: ``--shard I/N`` (or torchrun's RANK / WORLD_SIZE) takes videos I, I+N, I+2N, ... of the list; each
shard marks itself done in ``<out>/shards/``, and the last shard to finish writes the one ``list.csv`` for all
videos. ``--merge`` writes it from the finished files alone (after a shard failed, or to check what is missing).
Under torchrun with GPUs, rank r encodes on ``cuda:LOCAL_RANK``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.backends import InferenceBackend, cosine_rows
from edge.configfile import run_main
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME, CLIP_SIZE, CLIP_VIT_B16, PreprocessSpec, center_crop, \
    check_frame, normalize, preprocess, resize_shorter_side
from edge.snippets import DEFAULT_ENCODE_EVERY, SnippetAccumulator, encoded_offsets, snippet_count
from train.data.provenance import RECORD_FILE
from train.models.clip_source import describe, identity, is_random
from train.data.labels import LabelMap, label_map

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts")
CROP_CHOICES = (1, 5, 10)
CORNER_SIDE = 256  # shorter side the corner crops are cut from, for 224 crops (scales with the size)


# ---------------------------------------------------------------- crops
def crop_views(frame: np.ndarray, n_crops: int, spec: PreprocessSpec = CLIP_VIT_B16) -> np.ndarray:
    """BGR uint8 frame -> [n_crops, S, S, 3] BGR uint8 views (module docstring); view 0 = the device's."""
    if n_crops not in CROP_CHOICES:
        raise ValueError(f"crops must be one of {CROP_CHOICES}, got {n_crops}")
    views = [center_crop(frame, spec)]
    if n_crops > 1:
        big = resize_shorter_side(frame, round(spec.size * CORNER_SIDE / CLIP_SIZE), spec)
        h, w, s = big.shape[0], big.shape[1], spec.size
        views += [big[:s, :s], big[:s, w - s:], big[h - s:, :s], big[h - s:, w - s:]]
    if n_crops == 10:
        views += [v[:, ::-1] for v in views]
    return np.stack(views)


# ---------------------------------------------------------------- inputs
def find_videos(videos: Path) -> list[Path]:
    """A folder (its video files, sorted) or a text file with one video path per line (relative to the file)."""
    if videos.is_dir():
        found = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        if not found:
            raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {videos}")
        return found
    if videos.is_file():
        lines = [ln.strip() for ln in videos.read_text().splitlines()]
        return [(videos.parent / ln) for ln in lines if ln and not ln.startswith("#")]
    raise FileNotFoundError(f"--videos {videos}: no such folder or list file")


def read_labels(path: Path, labels: LabelMap) -> dict[str, str]:
    """``name label`` lines or ``name,label`` CSV rows -> {name: label}, each label checked against ``labels``."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in (line.split(",") if "," in line else line.split())]
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'name label', got {line!r}")
        name, label = parts
        if (name.lower(), label.lower()) == ("name", "label"):
            continue  # CSV header
        labels.parse(label, where=f"{path}:{number}")
        out[Path(name).stem if Path(name).suffix.lower() in VIDEO_EXTENSIONS else name] = label
    return out


def read_frames(path: Path, accumulator: SnippetAccumulator, max_frames: int | None
                ) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, frame) for frames to encode, (index, None) for the others (grabbed, not decoded to BGR)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open video {path}")
    try:
        index = 0
        while max_frames is None or index < max_frames:
            if accumulator.needs_encoding(index):
                ok, frame = cap.read()
                if ok:
                    check_frame(frame, where=f"{path} frame {index}")
            else:
                ok, frame = cap.grab(), None
            if not ok:
                break
            yield index, frame
            index += 1
    finally:
        cap.release()


# ---------------------------------------------------------------- extraction
@dataclass
class VideoResult:
    frames: int
    snippets: int
    encoded: int  # frames through the encoder
    features: np.ndarray  # [T, n_crops, 512]


def extract_video(path: Path, backend: InferenceBackend, *, n_crops: int = 1,
                  encode_every: int = DEFAULT_ENCODE_EVERY,
                  batch: int = 32, max_frames: int | None = None) -> VideoResult:
    """Snippet features of one video; ``batch`` = images (frames x crops) per encoder call, at least one frame."""
    accumulator = SnippetAccumulator(encode_every)
    features: list[np.ndarray] = []
    pending: list[tuple[int, np.ndarray | None]] = []  # frames in order; crops [n, S, S, 3] for encoded ones
    encoded = frames = waiting = 0  # waiting: encoded frames in pending

    def flush() -> None:
        nonlocal encoded
        crops = [c for _, c in pending if c is not None]
        embeds = np.empty((0, n_crops, 0), np.float32)
        if crops:
            pixels = normalize(np.concatenate(crops))  # [B * n, 3, S, S]
            embeds = backend.run({CLIP_INPUT_NAME: pixels})[CLIP_OUTPUT_NAME].reshape(len(crops), n_crops, -1)
            encoded += len(crops)  # embeds: [B, n, 512]
        rows = iter(embeds)
        for index, view in pending:
            snippet = accumulator.push(index, None if view is None else next(rows))
            if snippet is not None:
                features.append(snippet.feature)
        pending.clear()

    for index, frame in read_frames(path, accumulator, max_frames):
        frames = index + 1
        pending.append((index, None if frame is None else crop_views(frame, n_crops)))
        if frame is not None:
            waiting += 1
        if waiting * n_crops >= batch:
            flush()
            waiting = 0
    flush()
    if frames == 0:
        raise OSError(f"no frames could be read from {path}")
    if snippet_count(frames) == 0:
        raise ValueError(f"{path} has {frames} frames, fewer than one 16-frame snippet")
    feats = np.stack(features)
    assert len(feats) == snippet_count(frames), (len(feats), frames)
    return VideoResult(frames=frames, snippets=len(feats), encoded=encoded, features=feats)


def crop_paths(out: Path, name: str, n_crops: int) -> list[Path]:
    return [out / f"{name}__{k}.npy" for k in range(n_crops)]


def save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def write_list(path: Path, rows: list[tuple[Path, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((str(p.resolve()), label) for p, label in rows)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def check_settings(out: Path, settings: dict) -> None:
    """Record the run's settings; refuse to mix features made with different ones in one folder."""
    path = out / RECORD_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            raise ValueError(f"{out} holds features made with other settings ({path}): "
                             + ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in changed.items())
                             + "; use another --out or delete the folder")
    write_json_atomic(path, settings)


def parse_shard(text: str | None, env: dict[str, str] | os._Environ = os.environ) -> tuple[int, int]:
    """``--shard I/N``, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    if text is None:
        return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: expected 0 <= I < N")
    return index, count


def shard_videos(videos: list[Path], index: int, count: int) -> list[Path]:
    """Videos index, index + count, ... (round robin, so long and short files spread over the shards)."""
    return videos[index::count]


def shard_marker(out: Path, index: int, count: int) -> Path:
    return out / "shards" / f"{index}-of-{count}.json"


def finished_rows(videos: list[Path], out: Path, n_crops: int, labels: dict[str, str], default_label: str
                  ) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(list rows of every video whose crop files all exist, in list order; the videos still missing)."""
    rows: list[tuple[Path, str]] = []
    missing: list[Path] = []
    for video in videos:
        paths = crop_paths(out, video.stem, n_crops)
        if all(p.is_file() for p in paths):
            rows += [(p, labels.get(video.stem, default_label)) for p in paths]
        else:
            missing.append(video)
    return rows, missing


def merge(videos: list[Path], out: Path, n_crops: int, labels: dict[str, str], default_label: str) -> list[Path]:
    """Write ``out/list.csv`` for every finished video of the whole list; returns the missing ones."""
    rows, missing = finished_rows(videos, out, n_crops, labels, default_label)
    write_list(out / "list.csv", rows)
    log.info("list %s: %d videos (%d rows)%s", out / "list.csv", len(videos) - len(missing), len(rows),
             f"; {len(missing)} not extracted: " + ", ".join(v.name for v in missing[:5])
             + (" ..." if len(missing) > 5 else "") if missing else "")
    return missing


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """One process at a time (shards share the folder's ONNX export)."""
    import fcntl

    with open(out / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


PARITY_MIN_COSINE = 0.999  # features of a faster runtime vs ONNX Runtime FP32, per frame
BACKENDS = ("auto", "torch", "onnx", "openvino")


def resolve_backend(kind: str, device: str | None) -> str:
    """``auto``: torch on a GPU, else OpenVINO where installed (the fastest CPU runtime), else ONNX Runtime."""
    if kind != "auto":
        return kind
    if device is not None:
        return "torch"
    from edge.backends.openvino import available

    return "openvino" if available() else "onnx"


def probe_pixels(videos: list[Path], count: int = 8) -> np.ndarray | None:
    """``count`` frames spread over the first readable video, preprocessed [count, 3, 224, 224] (the parity
    check's input); None when no video can be read."""
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or count
        frames = []
        for index in np.linspace(0, max(total - 1, 0), count).round().astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(frame)
        capture.release()
        if frames:
            return preprocess(frames)
    return None


def openvino_within_parity(path: Path, threads: int | None, probe: np.ndarray) -> InferenceBackend:
    """OpenVINO on ``path`` at the CPU's precision (bf16 where native), kept only if its features stay within
    ``PARITY_MIN_COSINE`` of ONNX Runtime FP32 on ``probe``; else OpenVINO f32."""
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.backends.openvino import OpenVINOBackend

    backend = OpenVINOBackend(path, threads=threads)
    if backend.precision == "f32":
        return backend
    reference = OnnxRuntimeBackend(path, threads=threads).run({CLIP_INPUT_NAME: probe})[CLIP_OUTPUT_NAME]
    cosine = float(cosine_rows(backend.run({CLIP_INPUT_NAME: probe})[CLIP_OUTPUT_NAME], reference).min())
    if cosine < PARITY_MIN_COSINE:
        log.warning("OpenVINO %s features: cosine %.5f vs ONNX Runtime FP32 < %.3f on %d frames: extracting in f32",
                    backend.precision, cosine, PARITY_MIN_COSINE, len(probe))
        return OpenVINOBackend(path, precision="f32", threads=threads)
    log.info("OpenVINO %s features: cosine >= %.5f vs ONNX Runtime FP32 on %d frames (budget %.3f)",
             backend.precision, cosine, len(probe), PARITY_MIN_COSINE)
    return backend


def make_backend(kind: str, source: str, *, seed: int, onnx_path: Path | None, out: Path,
                 threads: int | None, device: str | None = None, probe: np.ndarray | None = None
                 ) -> InferenceBackend:
    """``torch``: the CLIP module itself (on ``device``); ``onnx``: ONNX Runtime on ``onnx_path`` (exported there
    if absent); ``openvino``: OpenVINO on the same file, bf16 where the CPU has it and its features on ``probe``
    stay within the parity budget (:func:`openvino_within_parity`)."""
    from train.models.clip_visual import TorchCLIPBackend, load_clip_visual

    if kind == "torch":
        return TorchCLIPBackend(load_clip_visual(source, seed=seed), threads=threads, device=device)
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from train.export.clip import export_clip, matches

    path = onnx_path or out / "clip_visual.onnx"
    if onnx_path is None:
        with folder_lock(out):
            if not matches(path, source, seed):
                export_clip(source, path, seed=seed)
    if kind == "openvino":
        from edge.backends.openvino import OpenVINOBackend

        if probe is None:  # nothing to check the bf16 features on: f32
            return OpenVINOBackend(path, precision="f32", threads=threads)
        return openvino_within_parity(path, threads, probe)
    return OnnxRuntimeBackend(path, threads=threads)


def torch_device(env: dict[str, str] | os._Environ = os.environ) -> str | None:
    """``cuda:LOCAL_RANK`` when a GPU is there (one per rank under torchrun), else None (CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(env.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"


def cpu_threads(requested: int | None, shards_here: int, device: str | None) -> int | None:
    """``--threads``, else the cores split among the shards on this machine (None: the library's default)."""
    if requested is not None or device is not None or shards_here <= 1:
        return requested
    return max(1, (os.cpu_count() or 1) // shards_here)


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Path, str]] | None = None
    snippets: int = 0
    encoded: int = 0
    seconds: float = 0.0


def run(videos: list[Path], out: Path, backend: InferenceBackend, *, n_crops: int, encode_every: int,
        batch: int, labels: dict[str, str], default_label: str, max_frames: int | None,
        shard: tuple[int, int] = (0, 1)) -> Summary:
    """Extract every video of this shard not done yet; the last shard to finish writes the list CSV for all
    finished videos of the whole list."""
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(failed=[])
    mine = shard_videos(videos, *shard)
    start = time.perf_counter()
    bar = tqdm(mine, unit="video", desc="extract" if shard[1] == 1 else f"extract {shard[0]}/{shard[1]}")
    for video in bar:
        paths = crop_paths(out, video.stem, n_crops)
        if all(p.is_file() for p in paths):
            summary.skipped += 1
            continue
        try:
            result = extract_video(video, backend, n_crops=n_crops, encode_every=encode_every, batch=batch,
                                   max_frames=max_frames)
        except (OSError, ValueError) as err:
            log.error("skipping %s: %s", video, err)
            summary.failed.append((video, str(err)))
            continue
        for k, path in enumerate(paths):
            save_atomic(path, np.ascontiguousarray(result.features[:, k]))  # [T, 512]
        summary.done += 1
        summary.snippets += result.snippets
        summary.encoded += result.encoded
        elapsed = time.perf_counter() - start
        bar.set_postfix(snippets_s=f"{summary.snippets / elapsed:.1f}", frames_s=f"{summary.encoded / elapsed:.1f}")
    summary.seconds = time.perf_counter() - start
    if shard[1] == 1:
        merge(videos, out, n_crops, labels, default_label)
        return summary
    marker = shard_marker(out, *shard)
    marker.parent.mkdir(exist_ok=True)
    write_json_atomic(marker, {"videos": len(mine), "done": summary.done, "skipped": summary.skipped,
                               "failed": [str(v) for v, _ in summary.failed], "seconds": summary.seconds})
    if all(shard_marker(out, i, shard[1]).is_file() for i in range(shard[1])):
        merge(videos, out, n_crops, labels, default_label)
    else:
        log.info("shard %d/%d done; the last shard to finish writes %s (or run with --merge)", *shard,
                 out / "list.csv")
    unlisted = [v.stem for v in videos if v.stem not in labels]
    if labels and unlisted:
        log.warning("%d videos are not in the labels file and got %r: %s", len(unlisted), default_label,
                    ", ".join(unlisted[:5]) + (" ..." if len(unlisted) > 5 else ""))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad extract",
                                     description="CLIP snippet features of videos, VadCLIP format",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--videos", required=True, type=Path, help="folder of videos, or a text file listing them")
    parser.add_argument("--out", required=True, type=Path, help="output folder for .npy files and list.csv")
    parser.add_argument("--crops", type=int, default=1, choices=CROP_CHOICES, help="views per frame (default 1)")
    parser.add_argument("--encode-every", type=int, default=DEFAULT_ENCODE_EVERY, metavar="K",
                        help="encode frames 0, K, 2K.. of each 16-frame snippet (1..16, default "
                             f"{DEFAULT_ENCODE_EVERY}: the device's policy; 1 = the public release's)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (default): torch on a GPU, else OpenVINO where installed (bf16 where the CPU has "
                             f"it, kept within cosine {PARITY_MIN_COSINE} of FP32), else ONNX Runtime (onnx)")
    parser.add_argument("--clip", required=True,
                        help="Hugging Face id (openai/clip-vit-base-patch16), local Hugging Face CLIP folder, or "
                             "explicitly 'random' / 'tiny' (random weights: tests and timing only)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed for 'random' / 'tiny'")
    parser.add_argument("--onnx", type=Path, help="exported CLIP visual ONNX for --backend onnx "
                                                  "(default: export to OUT/clip_visual.onnx)")
    parser.add_argument("--labels", type=Path, help="'name label' lines or 'name,label' CSV")
    parser.add_argument("--dataset", choices=("ucf", "xd"), default="ucf", help="label map the labels follow")
    parser.add_argument("--default-label", help="label of unlisted videos (default: the normal class)")
    parser.add_argument("--batch", type=int, default=32, help="images (frames x crops) per encoder call")
    parser.add_argument("--threads", type=int, help="CPU threads for torch / ONNX Runtime")
    parser.add_argument("--max-frames", type=int, help="read at most this many frames per video")
    parser.add_argument("--shard", metavar="I/N", help="extract videos I, I+N, ... of the list (default: torchrun's "
                                                      "RANK/WORLD_SIZE, else all)")
    parser.add_argument("--merge", action="store_true", help="only write list.csv from the finished files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        encoded_offsets(args.encode_every)
        if args.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {args.batch}")
        labels_map = label_map(args.dataset)
        default_label = args.default_label or labels_map.codes[0]
        labels_map.parse(default_label, where="--default-label")
        labels = read_labels(args.labels, labels_map) if args.labels else {}
        videos = find_videos(args.videos)
        shard = parse_shard(args.shard)
        if args.merge:
            return 1 if merge(videos, args.out, args.crops, labels, default_label) else 0
        args.out.mkdir(parents=True, exist_ok=True)
        device = torch_device() if args.backend in ("torch", "auto") else None
        args.backend = resolve_backend(args.backend, device)
        threads = cpu_threads(args.threads, int(os.environ.get("LOCAL_WORLD_SIZE", shard[1])), device)
        probe = probe_pixels(videos) if args.backend == "openvino" else None
        backend = make_backend(args.backend, args.clip, seed=args.seed, onnx_path=args.onnx, out=args.out,
                               threads=threads, device=device, probe=probe)
        seed = args.seed if is_random(args.clip) else None
        check_settings(args.out, {"clip": describe(args.clip), "seed": seed, "clip_identity": identity(args.clip, seed),
                                  "crops": args.crops, "encode_every": args.encode_every,
                                  "max_frames": args.max_frames, "preprocess": CLIP_VIT_B16.to_dict()})
        if is_random(args.clip):
            log.warning("CLIP source %r has RANDOM weights: these features are for tests and timing only", args.clip)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return 2
    summary = run(videos, args.out, backend, n_crops=args.crops, encode_every=args.encode_every,
                  batch=args.batch, labels=labels, default_label=default_label, max_frames=args.max_frames,
                  shard=shard)
    seconds = max(summary.seconds, 1e-9)
    log.info("%d videos extracted, %d already done, %d failed; %d snippets, %d frames encoded in %.1f s "
             "(%.1f frames/s, %.1f snippets/s, backend %s); list: %s", summary.done, summary.skipped,
             len(summary.failed), summary.snippets, summary.encoded, summary.seconds, summary.encoded / seconds,
             summary.snippets / seconds, args.backend, args.out / "list.csv")
    if summary.failed:
        log.error("failed videos:\n%s", "\n".join(f"  {p}: {why}" for p, why in summary.failed))
        return 1
    return 0


if __name__ == "__main__":  # an alias of `cplvad extract`
    raise SystemExit(run_main(main, prog="cplvad extract"))
