"""The real UCF-Crime / XD-Violence test and train layouts, in one compact file per layout.

The benchmark generator (:mod:`train.data.synth`) needs, of the real releases, only their layout: every test
video's name, label, listed crop, length and frame-level ground truth, its anomaly segments and their classes,
and the training list's video names and labels. The originals are 1,090 per-video gt files (PEL4VAD, MIT) and
VadCLIP's lists and mAP ground truth (Apache-2.0); this module derives from them one ``<layout>.npz`` per
layout (``train/data/public/layouts/``, shipped with the package; no pickle inside), which the generator reads
by default:

    python -m train.data.layouts --data-dir DIR [--out train/data/public/layouts] [--check]

``DIR`` holds ``annotations/<layout>/`` (VadCLIP: the two lists, ``gt_segment*.npy``, ``gt_label*.npy``) and
``gt/<layout>/`` (PEL4VAD: ``<video>__9_gt.npy`` UCF, ``<video>__0.npy`` XD); ``--check`` re-derives and
compares with the shipped files instead of writing. Arrays of a layout file (N test videos, K train videos)::

    test_names, test_labels [N] str     test_crops [N]   the crop the real test list names (first row)
    test_frames [N]                     frames of the gt file (16 x snippets)
    gt_runs [R,2], gt_run_counts [N]    frame intervals [start, end) where the gt is 1, per video in order
    segments [S,2] float64 (frames), segment_classes [S] str, segment_counts [N]   VadCLIP's mAP ground truth
    train_names, train_labels [K] str   the training list's videos in first-appearance order
    gt_segment_npy, gt_label_npy uint8  VadCLIP's two object-array files byte for byte (copied to datasets)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from edge.snippets import FRAMES_PER_SNIPPET
from train.data.release import read_rows, split_crop

log = logging.getLogger(__name__)

LAYOUT_DIR = Path(__file__).resolve().parent / "public" / "layouts"
SOURCES = {  # layout -> (train list, test list, gt_segment, gt_label) under annotations/<layout>/
    "ucf": ("ucf_CLIP_rgb.csv", "ucf_CLIP_rgbtest.csv", "gt_segment_ucf.npy", "gt_label_ucf.npy"),
    "xd": ("xd_CLIP_rgb.csv", "xd_CLIP_rgbtest.csv", "gt_segment.npy", "gt_label.npy"),
}
KEYS = ("test_names", "test_labels", "test_crops", "test_frames", "gt_runs", "gt_run_counts", "segments",
        "segment_classes", "segment_counts", "train_names", "train_labels", "gt_segment_npy", "gt_label_npy")


def videos(rows: list[tuple[str, str]]) -> list[tuple[str, str, list[int]]]:
    """List rows -> (video, label, crop indices) in first-appearance order."""
    grouped: dict[str, tuple[str, list[int]]] = {}
    for path, label in rows:
        name, crop = split_crop(path)
        grouped.setdefault(name, (label, []))[1].append(crop or 0)
    return [(name, label, crops) for name, (label, crops) in grouped.items()]


def runs(gt: np.ndarray) -> np.ndarray:
    """Frame intervals [R,2] ``[start, end)`` where a 0/1 ground truth is 1."""
    edges = np.diff(np.concatenate([[0], (gt > 0).astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], 1).astype(np.int64)


def frames_from_runs(length: int, intervals: np.ndarray) -> np.ndarray:
    """Inverse of :func:`runs`: float32 0/1 ground truth [length]."""
    gt = np.zeros(length, np.float32)
    for start, end in intervals:
        gt[start:end] = 1.0
    return gt


def derive_layout(layout: str, data_dir: str | Path) -> dict[str, np.ndarray]:
    """The layout arrays (see the module docstring) from the original annotation and gt files."""
    if layout not in SOURCES:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(SOURCES)}")
    data_dir = Path(data_dir)
    train_csv, test_csv, seg_name, lab_name = SOURCES[layout]
    ann, gt_dir = data_dir / "annotations" / layout, data_dir / "gt" / layout
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir} not found: --data-dir must hold annotations/{layout}/ and "
                                f"gt/{layout}/")
    # UCF: <video>__9_gt.npy, XD: <video>__0.npy
    gt_files = {split_crop(p.stem.removesuffix("_gt"))[0]: p for p in gt_dir.glob("*.npy")}
    seg_file, lab_file = ann / seg_name, ann / lab_name
    segments = np.load(seg_file, allow_pickle=True)  # trusted VadCLIP object arrays
    labels = np.load(lab_file, allow_pickle=True)
    test = videos(read_rows(ann / test_csv))
    if len(segments) != len(test) or len(labels) != len(test):
        raise ValueError(f"{seg_file}, {lab_file}: {len(segments)} / {len(labels)} entries, "
                         f"expected one per test video ({len(test)})")
    frames, gt_runs, segs, classes = [], [], [], []
    for i, (name, _, _) in enumerate(test):
        if name not in gt_files:
            raise FileNotFoundError(f"{gt_dir}: no gt file for test video {name}")
        gt = np.load(gt_files[name])
        if gt.size % FRAMES_PER_SNIPPET or not np.isin(gt, (0.0, 1.0)).all():
            raise ValueError(f"{gt_files[name]}: expected 0/1 values, a multiple of {FRAMES_PER_SNIPPET} "
                             f"frames")
        frames.append(gt.size)
        gt_runs.append(runs(gt))
        segs.append(np.asarray(segments[i], np.float64).reshape(-1, 2))
        classes.append([str(c) for c in labels[i]])
    train = [(name, label) for name, label, _ in videos(read_rows(ann / train_csv))]
    return {
        "test_names": np.array([t[0] for t in test]), "test_labels": np.array([t[1] for t in test]),
        "test_crops": np.array([t[2][0] for t in test], np.int64), "test_frames": np.array(frames, np.int64),
        "gt_runs": np.concatenate(gt_runs).reshape(-1, 2),
        "gt_run_counts": np.array([len(r) for r in gt_runs], np.int64),
        "segments": np.concatenate(segs), "segment_counts": np.array([len(s) for s in segs], np.int64),
        "segment_classes": np.array([c for cs in classes for c in cs]),
        "train_names": np.array([t[0] for t in train]), "train_labels": np.array([t[1] for t in train]),
        "gt_segment_npy": np.frombuffer(seg_file.read_bytes(), np.uint8),
        "gt_label_npy": np.frombuffer(lab_file.read_bytes(), np.uint8),
    }


def read_layout_file(path: str | Path) -> dict[str, np.ndarray]:
    """The layout arrays of a derived ``<layout>.npz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: reinstall the package or derive it "
                                f"(python -m train.data.layouts)")
    with np.load(path, allow_pickle=False) as z:
        missing = set(KEYS) - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}; re-derive it "
                             f"(python -m train.data.layouts)")
        return {k: z[k] for k in KEYS}


def load_layout(layout: str, data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The layout arrays: derived from ``data_dir``'s original files when given, else the shipped file."""
    if layout not in SOURCES:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(SOURCES)}")
    if data_dir is not None:
        return derive_layout(layout, data_dir)
    return read_layout_file(LAYOUT_DIR / f"{layout}.npz")


def split_by_counts(values: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Consecutive slices of ``values`` of the given lengths."""
    return np.split(values, np.cumsum(counts)[:-1])


def real_test_videos(layout: str) -> list[tuple[str, np.ndarray, np.ndarray, list[str]]]:
    """Per real test video (list order): name, frame ground truth [frames] float32 0/1, VadCLIP segments
    [S,2] (frames) and their classes (``["A"]`` for a normal video)."""
    arrays = load_layout(layout)
    runs_of = split_by_counts(arrays["gt_runs"], arrays["gt_run_counts"])
    segments = split_by_counts(arrays["segments"], arrays["segment_counts"])
    classes = split_by_counts(arrays["segment_classes"], arrays["segment_counts"])
    return [(str(name), frames_from_runs(int(n), r), s, c.tolist())
            for name, n, r, s, c in zip(arrays["test_names"], arrays["test_frames"], runs_of, segments,
                                        classes)]


def differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """Names of the arrays that differ (dtype kind, shape or values) between two layouts."""
    return [k for k in KEYS if a[k].dtype.kind != b[k].dtype.kind or not np.array_equal(a[k], b[k])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.data.layouts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="folder with annotations/<layout>/ (VadCLIP) and gt/<layout>/ (PEL4VAD)")
    parser.add_argument("--out", type=Path, default=LAYOUT_DIR, help="where to write <layout>.npz")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    status = 0
    for layout in SOURCES:
        try:
            derived = derive_layout(layout, args.data_dir)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        path = args.out / f"{layout}.npz"
        if args.check:
            diff = differences(derived, read_layout_file(path))
            log.info("%s: %s", path, f"differs in {', '.join(diff)}" if diff else "matches the originals")
            status |= bool(diff)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **derived)
        log.info("%s: %d test / %d train videos, %.0f KB", path, len(derived["test_names"]),
                 len(derived["train_names"]), path.stat().st_size / 1024)
    return status


if __name__ == "__main__":
    sys.exit(main())
