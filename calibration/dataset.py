"""The calibration set: the deployment's own frames, through the runtime's own preprocessing, saved so runs repeat.

Frames come from ``--source`` values: a video file, an image file, a folder of them, a camera index or a stream
URL (``edge.capture.parse_source``). From every finite source ``frames / sources`` frames are taken evenly spaced
over its length with a seeded phase; live sources give every ``live_stride``-th frame until their share is read.
Frames are kept as the model sees them before normalisation (``edge.preprocess.center_crop``: BGR uint8
[size, size, 3]), 150 KB each, and normalised on use.

Head windows (snippet features [K, W, 512] + mask [K, W], as the ring buffer fills and runs) come either from a
dataset folder (``train.data.release.load_split``) or from the calibration frames themselves: each
source's frames, in order, encoded by the float CLIP model, stand for a sequence of snippets.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.backends import InferenceBackend
from edge.capture import parse_source
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME, CLIP_VIT_B16, PreprocessSpec, center_crop, normalize
from edge.ringbuffer import ring_windows
from train.data.release import load_split

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SUGGESTED_FRAMES = 500


@dataclass(frozen=True)
class FrameSet:
    """Calibration frames: crops [N, S, S, 3] uint8 BGR, the source of each [N] and the source names."""

    crops: np.ndarray
    source_index: np.ndarray
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.crops)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, crops=self.crops, source_index=self.source_index, sources=np.array(self.sources))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FrameSet:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["crops"], z["source_index"], tuple(str(s) for s in z["sources"]))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a calibration frame set ({err}); rebuild it with --source") from None


def even_indices(length: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` indices spread evenly over ``range(length)`` with a seeded phase inside the first step."""
    if length <= 0 or count <= 0:
        return np.zeros(0, np.int64)
    if count >= length:
        return np.arange(length)
    step = length / count
    phase = np.random.default_rng(seed).uniform(0, step)
    return np.minimum((phase + step * np.arange(count)).astype(np.int64), length - 1)


def split_quota(total: int, parts: int) -> list[int]:
    """``total`` frames shared by ``parts`` sources as evenly as possible (earlier sources take the remainder)."""
    if parts <= 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def holdout_mask(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """[n] bool: a seeded ``fraction`` of the rows (at least one when n >= 2) held out from calibration."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction {fraction}; expected a value in (0, 1)")
    held = int(round(n * fraction)) if n >= 2 else 0
    held = min(max(held, 1 if n >= 2 else 0), n - 1) if n else 0
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[:held]] = True
    return mask


def expand_sources(sources: Sequence[str]) -> list[str]:
    """Folders -> their video and image files (sorted); other values unchanged. Missing paths are errors."""
    out: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"--source {source}: the folder has no videos ({', '.join(VIDEO_SUFFIXES)}) or "
                                 f"images ({', '.join(IMAGE_SUFFIXES)})")
            out += [str(p) for p in files]
        elif path.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES and not path.is_file():
            raise FileNotFoundError(f"--source {source}: file not found")
        else:
            out.append(source)
    return out


def _read_file(capture: cv2.VideoCapture, count: int, seed: int, where: str) -> list[np.ndarray]:
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        raise ValueError(f"{where}: the frame count is unknown; pass it as a live source or convert the file")
    wanted = set(even_indices(total, count, seed).tolist())
    frames = []
    for index in range(max(wanted) + 1):
        if not capture.grab():
            break
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok and frame is not None:
                frames.append(frame)
    return frames


def _read_live(capture: cv2.VideoCapture, count: int, stride: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count and capture.grab():
        if index % stride == 0:
            ok, frame = capture.retrieve()
            if ok and frame is not None:
                frames.append(frame)
        index += 1
    return frames


def read_source(source: str, count: int, *, seed: int = 0, spec: PreprocessSpec = CLIP_VIT_B16,
                live_stride: int = 10) -> np.ndarray:
    """Up to ``count`` frames of one source as crops [n, S, S, 3] uint8 (see the module docstring)."""
    if Path(source).suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(source, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"--source {source}: unreadable image")
        frames = [image]
    else:
        camera = parse_source(source)
        capture = cv2.VideoCapture(camera.target, camera.api)
        if not capture.isOpened():
            raise ValueError(f"--source {camera.display}: cannot be opened")
        try:
            frames = (_read_file(capture, count, seed, camera.display) if camera.is_file
                      else _read_live(capture, count, live_stride))
        finally:
            capture.release()
    crops = [center_crop(f, spec, where=f"{source} frame {i}") for i, f in enumerate(frames[:count])]
    return np.stack(crops) if crops else np.zeros((0, spec.size, spec.size, 3), np.uint8)


def build_frame_set(sources: Sequence[str], frames: int, *, seed: int = 0, spec: PreprocessSpec = CLIP_VIT_B16,
                    min_frames: int = 1, live_stride: int = 10) -> FrameSet:
    """Read ``frames`` frames shared over ``sources``; ValueError below ``min_frames``, warning below 500."""
    if not sources:
        raise ValueError("no --source given: calibration needs frames from the deployment's cameras or videos")
    files = expand_sources(sources)
    crops, owner = [], []
    for i, (source, quota) in enumerate(zip(tqdm(files, desc="calibration frames", unit="source"),
                                            split_quota(frames, len(files)))):
        got = read_source(source, quota, seed=seed + i, spec=spec, live_stride=live_stride)
        if len(got) == 0:
            log.warning("--source %s gave no frames", source)
        crops.append(got)
        owner.append(np.full(len(got), i, np.int32))
    result = FrameSet(np.concatenate(crops), np.concatenate(owner), tuple(files))
    if len(result) < min_frames:
        raise ValueError(f"calibration set has {len(result)} frames from {len(files)} sources; at least {min_frames} "
                         f"(one batch) needed: add sources or raise --frames")
    if len(result) < SUGGESTED_FRAMES:
        log.warning("calibration set has %d frames (< %d suggested): INT8 ranges may not cover the deployment",
                    len(result), SUGGESTED_FRAMES)
    log.info("calibration set: %d frames from %d sources", len(result), len(files))
    return result


def pixels(crops: np.ndarray, spec: PreprocessSpec = CLIP_VIT_B16) -> np.ndarray:
    """Crops [N, S, S, 3] uint8 -> the CLIP input [N, 3, S, S] float32."""
    return normalize(np.ascontiguousarray(crops), spec)


def embed(clip: InferenceBackend, crops: np.ndarray, *, batch: int = 8, spec: PreprocessSpec = CLIP_VIT_B16,
          desc: str = "CLIP embeddings") -> np.ndarray:
    """CLIP image embeddings [N, 512] of the crops, in batches."""
    out = [clip.run({CLIP_INPUT_NAME: pixels(crops[s:s + batch], spec)})[CLIP_OUTPUT_NAME]
           for s in tqdm(range(0, len(crops), batch), desc=desc, unit="batch", leave=False)]
    return np.concatenate(out) if out else np.zeros((0, 512), np.float32)


def sample_windows(sequences: Sequence[np.ndarray], window: int, count: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` ring-buffer windows spread evenly over all the sequences' windows: ([K, W, D], [K, W])."""
    per_seq = [len(s) for s in sequences]
    total = sum(per_seq)
    if total == 0:
        raise ValueError("no snippet sequences to draw head windows from")
    picks = even_indices(total, count, seed)
    starts = np.cumsum([0] + per_seq)
    xs, masks = [], []
    for i, seq in enumerate(sequences):
        local = picks[(picks >= starts[i]) & (picks < starts[i + 1])] - starts[i]
        if len(local):
            x, m = ring_windows(seq, window)
            xs.append(x[local])
            masks.append(m[local])
    return np.concatenate(xs), np.concatenate(masks)


def frame_sequences(embeddings: np.ndarray, source_index: np.ndarray) -> list[np.ndarray]:
    """Per source, its frames' embeddings in order: each stands for one snippet feature."""
    return [embeddings[source_index == i] for i in np.unique(source_index)]


def feature_sequences(data: str | Path, *, videos: int = 64, split: str = "test",
                      feature_root: str | Path | None = None, dataset: str | None = None) -> list[np.ndarray]:
    """Snippet features of up to ``videos`` evenly chosen videos of a dataset folder's ``split`` list (any layout
    of :func:`train.data.release.locate`; ``feature_root`` for lists of the authors' absolute paths)."""
    listing = load_split(data, split, dataset, feature_root)
    picks = even_indices(len(listing), videos)
    return [listing.videos[i].load(0).astype(np.float32) for i in picks]
