"""Snippet-feature datasets in the VadCLIP release layout (numpy only: calibration and evaluation import it too).

A dataset folder ``DIR`` holds a training list, a test list and the test ground truth, under the names of one
of three layouts (:data:`LAYOUTS`; :func:`locate` finds which, so the public release loads as published)::

    layout           train list          test list              frame labels  segments             labels
    ours             train.csv           test.csv               gt_frames.npy gt_segment.npy       gt_label.npy
    VadCLIP UCF      ucf_CLIP_rgb.csv    ucf_CLIP_rgbtest.csv   gt_ucf.npy    gt_segment_ucf.npy   gt_label_ucf.npy
    VadCLIP XD       xd_CLIP_rgb.csv     xd_CLIP_rgbtest.csv    gt.npy        gt_segment.npy       gt_label.npy

    lists              `path,label` rows, one row per crop file `<video>__<k>.npy` ([T,512] float)
    frame labels       of the test videos concatenated in test-list order, one crop per video (16 per snippet)
    segments           per test video: [[start, end], ...] anomaly segments in frames (object array)
    labels             per test video: the class code of each segment, 'A' for normal (object array)

The release's lists hold the authors' absolute paths (``/home/.../UCFClipFeatures/Abuse/Abuse001_x264__0.npy``,
``/home/.../XDTrainClipFeatures/<video>__0.npy``): pass ``feature_root``, the folder the feature archives were
unpacked into, and each path is found by its trailing ``<archive dir>/<class dir>/<file>``, ``<class dir>/<file>``
or ``<file>``. ``cplvad synth`` writes our layout.

Training uses one crop per access (random, or seeded by ``seed``/epoch) and a fixed length: longer videos are
average-pooled into uniform bins, shorter ones zero-padded with a mask. Testing uses one crop per video (the
lowest ``k`` the test list names), at the native snippet rate, cut into fixed-length chunks.
"""
from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.snippets import EMBED_DIM, FRAMES_PER_SNIPPET
from train.data.labels import LABEL_MAPS, LabelMap, label_map

log = logging.getLogger(__name__)

DEFAULT_LEN = 256
CROPS = {"ucf": 10, "xd": 5}  # crops per training video train.data.synth writes (the published lists: 10 for both)


# ------------------------------------------------------------ files


def load_features(path: str | Path) -> np.ndarray:
    """One feature file -> float32 [T,512]; any problem raises ValueError naming the file."""
    return read_features(path).astype(np.float32, copy=False)


def read_features(path: str | Path) -> np.ndarray:
    """One feature file, checked like :func:`load_features`, in the file's own float dtype (float16 stays)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: feature file not found")
    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    if feats.ndim != 2 or feats.shape[1] != EMBED_DIM:
        raise ValueError(f"{path}: features have shape {list(feats.shape)}, expected [T, {EMBED_DIM}]")
    if feats.shape[0] == 0:
        raise ValueError(f"{path}: empty feature file (T = 0 snippets)")
    if not np.issubdtype(feats.dtype, np.floating):
        raise ValueError(f"{path}: features have dtype {feats.dtype}, expected a float type")
    bad = ~np.isfinite(feats)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{path}: {bad.sum()} NaN/Inf values in {len(rows)} snippets "
                         f"(first at snippet {rows[0]})")
    return feats


def num_snippets(path: str | Path) -> int:
    """T of a feature file, read from its header only."""
    path = Path(path)
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    if len(shape) != 2 or shape[1] != EMBED_DIM or shape[0] == 0:
        raise ValueError(f"{path}: features have shape {list(shape)}, expected [T, {EMBED_DIM}] with T > 0")
    return int(shape[0])


def resolve_path(raw: str, csv_dir: Path, feature_root: Path | None) -> Path:
    """A listed feature path: as given, else relative to the CSV, else under ``feature_root`` by its last 3, 2 or 1
    parts (``UCFClipFeatures/Abuse/x.npy``, ``Abuse/x.npy``, ``x.npy``; XD: ``XDTestClipFeatures/x.npy``)."""
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [given, csv_dir / given]
    if feature_root is not None:
        parts = given.parts[1:] if given.is_absolute() else given.parts
        candidates += [feature_root.joinpath(*parts[-k:]) for k in (3, 2, 1) if len(parts) >= k]
    for candidate in dict.fromkeys(candidates):
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    hint = (f" (is feature_root {feature_root} the folder the feature archives were unpacked into?)"
            if feature_root is not None else " (pass feature_root if the CSV lists another machine's paths)")
    raise FileNotFoundError(f"feature file {raw!r} not found; tried {tried}{hint}")


# ------------------------------------------------------------ lists


@dataclass(frozen=True)
class Video:
    """One video of a list: its crop files in crop order and its parsed label."""

    name: str
    label: str
    primary: int
    multi_hot: np.ndarray  # [M] float32
    crops: tuple[Path, ...]
    store: FeatureStore | None = field(default=None, compare=False, repr=False)  # see preload()

    def load(self, crop: int = 0) -> np.ndarray:
        """Features of one crop, float32 [T,512]: from the in-memory store when the split was preloaded."""
        if self.store is not None:
            return self.store.get(self.crops[crop])
        return load_features(self.crops[crop])


class FeatureStore:
    """Feature files held in memory: one concatenated array per file dtype, rows located by (start, end) offsets.

    Reading an item is a slice and a float32 copy, with no file opened; the arrays keep the files' dtype (the
    generated benchmark's float16 stays half the size)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.index: dict[Path, tuple[np.dtype, int, int]] = {}
        rows: dict[np.dtype, int] = {}
        for path in dict.fromkeys(paths):  # headers first: each array is allocated once, at its final size
            try:
                header = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as err:
                raise ValueError(f"{path}: not a readable .npy array ({err})") from None
            start = rows.get(header.dtype, 0)
            self.index[path] = (header.dtype, start, start + header.shape[0])
            rows[header.dtype] = start + header.shape[0]
        self.arrays = {dtype: np.empty((n, EMBED_DIM), dtype) for dtype, n in rows.items()}
        for path, (dtype, start, end) in self.index.items():
            self.arrays[dtype][start:end] = read_features(path)  # checked: shape, finite values

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def get(self, path: Path) -> np.ndarray:
        """The features of one file, float32 [T,512] (a copy: callers may change it)."""
        dtype, start, end = self.index[path]
        return self.arrays[dtype][start:end].astype(np.float32)


@dataclass(frozen=True)
class Split:
    videos: list[Video]
    label_map: LabelMap
    source: Path

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.videos]


def split_crop(path: str) -> tuple[str, int | None]:
    """``.../Abuse001_x264__3.npy`` -> (``Abuse001_x264``, 3); no ``__k`` suffix -> (stem, None)."""
    stem = Path(path).name.removesuffix(".npy")
    video, sep, crop = stem.rpartition("__")
    if sep and crop.isdigit():
        return video, int(crop)
    return stem, None


def infer_dataset(labels: Sequence[str], *, where: str = "") -> str:
    """'ucf' or 'xd' from the label strings of a list (XD uses codes such as ``A`` and ``B2-0-0``)."""
    for name, lm in LABEL_MAPS.items():
        try:
            for label in set(labels):
                lm.parse(label)
        except ValueError:
            continue
        return name
    raise ValueError(f"labels of {where or 'the list'} match no known dataset ({', '.join(LABEL_MAPS)}); "
                     f"first labels: {sorted(set(labels))[:5]}")


def read_rows(csv_path: str | Path) -> list[tuple[str, str]]:
    """The (path, label) rows of a `path,label` list file."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"list file {csv_path} not found")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: expected a header `path,label`, got {reader.fieldnames}")
        rows = [(r["path"], r["label"]) for r in reader]
    if not rows:
        raise ValueError(f"{csv_path}: the list has no rows")
    return rows


def read_split(csv_path: str | Path, dataset: str | None = None, feature_root: str | Path | None = None,
               crops: int | None = None) -> Split:
    """Read a `path,label` list; rows are grouped by video (crops in ``__k`` order).

    ``crops``: the crop count every video must have (None: the same count as the first video).
    """
    csv_path = Path(csv_path)
    root = Path(feature_root) if feature_root is not None else None
    rows = read_rows(csv_path)
    lm = label_map(dataset or infer_dataset([r[1] for r in rows], where=str(csv_path)))

    grouped: dict[str, list[tuple[int, str, str, int]]] = {}
    for line, (raw, label) in enumerate(rows, start=2):
        name, crop = split_crop(raw)
        grouped.setdefault(name, []).append((crop if crop is not None else 0, raw, label, line))
    videos = []
    expected = crops
    for name, items in grouped.items():
        items.sort(key=lambda item: item[0])
        labels = {item[2] for item in items}
        if len(labels) != 1:
            raise ValueError(f"{csv_path}: video {name} has several labels {sorted(labels)}")
        label, line = items[0][2], items[0][3]
        primary, multi_hot = lm.parse(label, where=f"{csv_path} line {line}")
        if expected is None:
            expected = len(items)
        if len(items) != expected:
            raise ValueError(f"{csv_path}: video {name} has {len(items)} crops, expected {expected}")
        paths = tuple(resolve_path(item[1], csv_path.parent, root) for item in items)
        videos.append(Video(name, label, primary, multi_hot, paths))
    log.debug("%s: %d videos, %d crops each (%s)", csv_path, len(videos), expected, lm.dataset)
    return Split(videos, lm, csv_path)


def preload(split: Split, budget_mb: float) -> Split:
    """``split`` with every crop file of every video held in memory (one :class:`FeatureStore`), when the files
    total at most ``budget_mb`` MB on disk (0: never); else ``split`` as it is, files read per access.

    Training reads each video once per epoch (plus validation and pseudo labels): one .npy per item made the
    full-scale runs bound by file loading. Items are the same either way."""
    paths = [p for v in split.videos for p in v.crops]
    total_mb = sum(p.stat().st_size for p in dict.fromkeys(paths)) / 2**20
    if budget_mb <= 0 or total_mb > budget_mb:
        log.info("%s: %.0f MB of feature files, read per access (in-memory budget %.0f MB)", split.source,
                 total_mb, budget_mb)
        return split
    started = time.perf_counter()
    store = FeatureStore(paths)
    log.info("%s: %d feature files (%.0f MB) held in memory in %.1f s", split.source, len(store.index),
             store.nbytes / 2**20, time.perf_counter() - started)
    return Split([replace(v, store=store) for v in split.videos], split.label_map, split.source)


# ------------------------------------------------------------ dataset folders


@dataclass(frozen=True)
class Layout:
    """The file names of one dataset-folder layout."""

    name: str
    dataset: str | None  # the dataset its names imply (None: inferred from the labels)
    train: str
    test: str
    gt_frames: str
    gt_segment: str
    gt_label: str


LAYOUTS = (
    Layout("ours", None, "train.csv", "test.csv", "gt_frames.npy", "gt_segment.npy", "gt_label.npy"),
    Layout("VadCLIP UCF-Crime", "ucf", "ucf_CLIP_rgb.csv", "ucf_CLIP_rgbtest.csv", "gt_ucf.npy",
           "gt_segment_ucf.npy", "gt_label_ucf.npy"),
    Layout("VadCLIP XD-Violence", "xd", "xd_CLIP_rgb.csv", "xd_CLIP_rgbtest.csv", "gt.npy", "gt_segment.npy",
           "gt_label.npy"),
)
ROLES = ("train", "test", "gt_frames", "gt_segment", "gt_label")
GROUND_TRUTH = ("gt_frames", "gt_segment", "gt_label")


def _listing(folder: Path, limit: int = 12) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "nothing (the folder is empty)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclass(frozen=True)
class ReleaseFiles:
    """The list and ground-truth files of one dataset folder, whatever its layout."""

    dir: Path
    layout: Layout

    def path(self, role: str) -> Path:
        """``role`` in :data:`ROLES` -> its path (it may not exist; see :meth:`require`)."""
        return self.dir / getattr(self.layout, role)

    def has(self, *roles: str) -> bool:
        return all(self.path(r).is_file() for r in roles)

    def require(self, *roles: str) -> ReleaseFiles:
        """Self when every ``role`` file exists; else FileNotFoundError naming the first missing one."""
        for role in roles:
            if not self.path(role).is_file():
                raise FileNotFoundError(f"{self.path(role)} not found ({self.layout.name} layout, "
                                        f"{role.replace('_', ' ')}); {self.dir} holds {_listing(self.dir)}")
        return self

    @property
    def train(self) -> Path:
        return self.path("train")

    @property
    def test(self) -> Path:
        return self.path("test")

    @property
    def dataset(self) -> str | None:
        return self.layout.dataset


def locate(data_dir: str | Path, dataset: str | None = None, *, need: Sequence[str] = ()) -> ReleaseFiles:
    """Detect the layout of a dataset folder (ours, VadCLIP UCF or VadCLIP XD) by the lists it holds.

    ``dataset`` ('ucf' / 'xd') picks one when the folder holds several (VadCLIP's own ``list/`` folder holds both
    releases); ``need`` (roles of :data:`ROLES`, ``"gt"`` for the three ground-truth files) must exist.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} not found (data.dir / --data)")
    present = [lay for lay in LAYOUTS if (folder / lay.train).is_file() or (folder / lay.test).is_file()]
    found = [lay for lay in present if dataset is None or lay.dataset in (None, dataset)]
    if not found:
        if present:
            raise ValueError(f"{folder} holds the {present[0].name} lists, but the dataset is set to {dataset!r}: "
                             f"set data.dataset to {present[0].dataset} (or leave it unset)")
        expected = "; ".join(f"{lay.train} + {lay.test} ({lay.name})" for lay in LAYOUTS)
        raise FileNotFoundError(f"{folder}: no dataset lists found, expected {expected}; "
                                f"the folder holds {_listing(folder)}")
    if len(found) > 1:
        names = " and ".join(f"{lay.name} ({lay.train}, {lay.test})" for lay in found)
        fix = ("name the dataset, ucf or xd (data.dataset; the baseline's dataset; evaluate's --dataset)"
               if dataset is None else "keep one layout's files in the folder")
        raise ValueError(f"{folder} holds the lists of several layouts, {names}: {fix}")
    files = ReleaseFiles(folder, found[0])
    roles = [r for role in need for r in (GROUND_TRUTH if role == "gt" else (role,))]
    return files.require(*roles)


def load_split(data_dir: str | Path, which: str, dataset: str | None = None,
               feature_root: str | Path | None = None, crops: int | None = None) -> Split:
    """The ``which`` ('train' / 'test') list of a dataset folder in any layout (see :func:`locate`)."""
    files = locate(data_dir, dataset, need=(which,))
    return read_split(files.path(which), dataset or files.dataset, feature_root, crops)


# ------------------------------------------------------------ lengths


def pool_or_pad(x: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """[N,...] -> ([length,...], mask [length] bool).

    N > length: mean over ``length`` uniform bins (bin i = rows floor(i*N/length) .. floor((i+1)*N/length));
    N <= length: zero padding after the N rows, mask True on the rows that hold data.
    """
    n = x.shape[0]
    mask = np.zeros(length, bool)
    if n > length:
        edges = np.linspace(0, n, length + 1).astype(np.int64)
        pooled = np.add.reduceat(x, edges[:-1], axis=0) / np.diff(edges).reshape(-1, *[1] * (x.ndim - 1))
        mask[:] = True
        return pooled.astype(x.dtype, copy=False), mask
    out = np.zeros((length, *x.shape[1:]), x.dtype)
    out[:n] = x
    mask[:n] = True
    return out, mask


def chunk(x: np.ndarray, size: int = DEFAULT_LEN) -> tuple[np.ndarray, np.ndarray]:
    """[N,...] -> (chunks [K,size,...] with K = ceil(N/size), mask [K,size]); the last chunk zero-padded."""
    n = x.shape[0]
    k = max(1, -(-n // size))
    out = np.zeros((k * size, *x.shape[1:]), x.dtype)
    out[:n] = x
    mask = np.zeros(k * size, bool)
    mask[:n] = True
    return out.reshape(k, size, *x.shape[1:]), mask.reshape(k, size)


def unchunk(y: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`chunk` for per-snippet outputs: [K,size,...] -> [n,...]."""
    return y.reshape(-1, *y.shape[2:])[:n]


def feature_stats(split: Split, max_videos: int = 2000, eps: float = 1e-2, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std [512] of the snippet features of (up to ``max_videos``) training videos, crop 0.

    The models standardise their input with these (CLIP snippet features share a large common component);
    ``eps`` floors the std so near-constant channels are not blown up.
    """
    order = np.random.default_rng(seed).permutation(len(split))[:max_videos]
    total = np.zeros(EMBED_DIM, np.float64)
    squares = np.zeros(EMBED_DIM, np.float64)
    count = 0
    for i in order:
        x = split.videos[i].load(0).astype(np.float64)
        total += x.sum(0)
        squares += (x * x).sum(0)
        count += x.shape[0]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean * mean, 0.0)) + eps
    return mean.astype(np.float32), std.astype(np.float32)


def iter_test(split: Split) -> Iterator[tuple[Video, np.ndarray]]:
    """(video, features [N,512]) of each test video, native rate, the crop the list names."""
    for video in split.videos:
        yield video, video.load(0)


# ------------------------------------------------------------ ground truth


@dataclass(frozen=True)
class GroundTruth:
    """Test-set truth in VadCLIP's layout (videos in test.csv order)."""

    names: list[str]
    num_snippets: list[int]
    gt_frames: np.ndarray  # [sum 16*T] float32, 0/1
    segments: list[np.ndarray]  # per video [S,2] float64 frames (start, end); normal videos: [[0, frames]]
    seg_labels: list[list[str]]  # per video, one class code per segment; 'A' = normal
    label_map: LabelMap

    def frames_of(self, index: int) -> np.ndarray:
        """Frame labels of one video."""
        start = FRAMES_PER_SNIPPET * sum(self.num_snippets[:index])
        return self.gt_frames[start:start + FRAMES_PER_SNIPPET * self.num_snippets[index]]


def _load_object_array(path: Path, count: int, test_list: Path) -> list:
    # These VadCLIP files are object arrays of Python lists: pickle is needed, and only used for them.
    data = list(np.load(path, allow_pickle=True))
    if len(data) != count:
        raise ValueError(f"{path}: {len(data)} entries, expected one per test video ({count} videos in "
                         f"{test_list}): the ground truth and the test list come from different releases")
    return data


def frames_hint(frames: int, snippets: int) -> str:
    """Why ``frames`` frame labels may not match ``snippets`` test snippets: the fix to print."""
    ratio = frames / max(snippets, 1)
    if round(ratio) != FRAMES_PER_SNIPPET and abs(ratio - round(ratio)) < 0.02 * ratio:
        return (f"the ground truth counts about {ratio:.1f} frames per snippet: the features were extracted with "
                f"another snippet length (re-extract with {FRAMES_PER_SNIPPET}-frame snippets)")
    return ("the test features found are not the ones this ground truth was made for: check data.feature_root "
            "(the folder the release's feature archives were unpacked into) and that the list, ground truth and "
            "features come from the same release")


def save_ground_truth(data_dir: str | Path, gt_frames: np.ndarray, segments: Sequence, seg_labels: Sequence) -> None:
    """Write DIR/gt_frames.npy, gt_segment.npy and gt_label.npy (our layout; what load_ground_truth reads).

    gt_frames: frame labels of the test videos concatenated in test.csv order; segments / seg_labels: one list per
    video ([[start, end], ...] frames, and a class code per segment, 'A' for normal videos), stored as given.
    """
    data_dir = Path(data_dir)
    np.save(data_dir / "gt_frames.npy", np.asarray(gt_frames, np.float32))
    for name, items in (("gt_segment.npy", segments), ("gt_label.npy", seg_labels)):
        array = np.empty(len(items), dtype=object)
        array[:] = list(items)
        np.save(data_dir / name, array, allow_pickle=True)


def load_ground_truth(data_dir: str | Path, *, feature_root: str | Path | None = None,
                      dataset: str | None = None) -> GroundTruth:
    """Read a dataset folder's test list (for names and lengths) and ground truth, in any layout (:func:`locate`),
    and check them against each other: 16 frame labels per listed test snippet (one crop per video, list order),
    one segment and label entry per test video."""
    files = locate(data_dir, dataset, need=("test", "gt"))
    split = read_split(files.test, dataset or files.dataset, feature_root)
    lengths = [num_snippets(v.crops[0]) for v in split.videos]
    n = len(split)

    frames_path = files.path("gt_frames")
    gt_frames = np.load(frames_path, allow_pickle=False).astype(np.float32).reshape(-1)
    expected = FRAMES_PER_SNIPPET * sum(lengths)
    if gt_frames.shape[0] != expected:
        raise ValueError(f"{frames_path}: {gt_frames.shape[0]} frame labels, expected {FRAMES_PER_SNIPPET} x "
                         f"{sum(lengths)} snippets = {expected} (the {n} test videos of {split.source}, one crop "
                         f"each, e.g. {split.videos[0].crops[0]}); "
                         f"{frames_hint(gt_frames.shape[0], sum(lengths))}")

    segment_path, label_path = files.path("gt_segment"), files.path("gt_label")
    raw_segments = _load_object_array(segment_path, n, split.source)
    raw_labels = _load_object_array(label_path, n, split.source)
    known = set(split.label_map.codes) | {"A"}
    segments, seg_labels = [], []
    for name, segs, labels in zip(split.names, raw_segments, raw_labels):
        try:
            arr = np.asarray(segs, dtype=np.float64).reshape(-1, 2)  # UCF stores the numbers as strings
        except ValueError:
            raise ValueError(f"{segment_path}: segments of {name} are not [[start, end], ...]: {segs!r}") from None
        labels = [str(lab) for lab in labels]
        if len(labels) != len(arr):
            raise ValueError(f"{label_path}: {name} has {len(labels)} labels for {len(arr)} segments")
        unknown = set(labels) - known
        if unknown:
            raise ValueError(f"{label_path}: {name} has unknown labels {sorted(unknown)}; "
                             f"expected {sorted(known)}")
        segments.append(arr)
        seg_labels.append(labels)
    return GroundTruth(split.names, lengths, gt_frames, segments, seg_labels, split.label_map)


def check_dataset(data_dir: str | Path, dataset: str | None = None, feature_root: str | Path | None = None) -> str:
    """Locate a dataset folder, read both lists (every feature file found) and check the ground truth against the
    test list; returns a one-line summary. Entry points call it first, so a wrong folder fails before training."""
    files = locate(data_dir, dataset, need=("train", "test", "gt"))
    train = read_split(files.train, dataset or files.dataset, feature_root)
    truth = load_ground_truth(data_dir, feature_root=feature_root, dataset=dataset)
    return (f"{files.dir} ({files.layout.name} layout, {train.label_map.dataset}): {len(train)} training videos "
            f"x {len(train.videos[0].crops)} crops, {len(truth.names)} test videos, "
            f"{truth.gt_frames.shape[0]} ground-truth frames")
