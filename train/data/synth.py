"""A CLIP-feature benchmark on the REAL UCF-Crime / XD-Violence layouts.

``cplvad synth --layout ucf|xd --out DIR [--seed N] [--regime default|context] [--scale F] [--dtype float16|float32]
[--workers N] [--set KNOB=VALUE ...]``

writes a dataset in the VadCLIP release format (see :mod:`train.data.release`): ``train.csv``, ``test.csv``,
``features/<video>__<crop>.npy`` [T,512], ``gt_frames.npy``, ``gt_segment.npy``, ``gt_label.npy``, plus
``train_truth.npz`` (snippet truth of the training videos, for pseudo-label quality reports only:
``binary/<video>`` [T] float32 0/1 and ``classes/<video>`` [T] int16, 0 = normal) and ``dataset.json``
(layout, seed, scale, knobs, generator version). Training videos get all crops (10 UCF, 5 XD); test videos only
the crop the real test list names (``__5`` UCF, ``__0`` XD).

What is real (``train/data/public/``: see :mod:`train.data.layouts` and its README):
  * test split: every video's name, label, length (``len(gt file) / 16`` snippets), anomaly segments and their
    classes; ``gt_frames`` is the concatenation of the real per-video gt files and ``gt_segment`` /
    ``gt_label`` are the real files, so metrics run exactly as on the real release;
  * training split: the real video names and labels (a class-stratified fraction ``--scale`` of them), lengths
    drawn from the real test lengths (normal / anomalous videos apart, jittered by +-``length_jitter``),
    anomaly segments copied from a random real anomalous test video, rescaled to the new length;
  * class directions: the real CLIP ViT-B/16 text embeddings of the class names.

Generative model of one snippet feature (512-d, unnormalised like CLIP image embeddings, norm ~10)::

    x_t = mu + s_v + Q_v z_t + n_t + sum_events a_e r_e(t) d_e + o_{v,k} + n_{t,k}

  mu        shared image mean (norm ``image_mean_norm``);           s_v  per-video scene (norm ``scene_norm``)
  z_t       AR(1) drift, rho ``drift_rho``, in a random ``drift_dim``-d subspace Q_v (norm ``drift_norm``)
  n_t       snippet noise (norm ``noise_norm``);  o_{v,k}, n_{t,k}  per-crop offset and noise (crop views)
  events    anomalies (the labelled segments) and benign distractors, each with a trapezoid ramp r_e(t)
            (``ramp_fraction`` of the event at each end, so boundaries are soft), a direction d_e and a
            strength a_e = log-normal around ``anomaly_strength`` / ``distractor_strength``
            (``strength_spread``); a ``subtle_fraction`` of anomalies is scaled by ``subtle_factor``.

Directions come from the text embeddings E (class 0 = normal): the generic activity direction
g = unit(mean(E_1..M) - E_0); the class part u_c = unit of the centred embeddings E_c - mean(E_1..M) mixed
by the confusion matrix softmax_j(cos(E_c, E_j) / ``confusion_tau``) (so classes whose names are alike share
components) and made orthogonal to g; an anomaly of class c moves along d_c = unit(w g + sqrt(1 - w^2) u_c),
w = ``generic_weight``; an XD segment in a multi-label video mixes in ``multi_label_mix`` of the video's other
classes. Distractors (``distractor_rate`` per 100 snippets, in every video) move along
unit(w' g + sqrt(1 - w'^2) b) with a random benign b, w' = ``distractor_generic_weight``: a detector that only
learned "something happens" (g) also fires on them, more weakly; the class part separates anomalies, and
since the u_c sum to about zero no single linear direction catches all classes.

Version 2 (``distractor_generic_weight`` 0.7 -> 0.3). In version 1 distractors leaned on g more than the
anomalies did, which made frame AUC a measure of how a detector handled that trap rather than of detection:
on seed 1 the MLP MIL baseline scored 0.75 at scale 0.1 but 0.51 at scale 0.3 (more training data, worse),
and a linear MIL head 0.30 (anti-correlated). With distractors mostly benign (g is a useful but imperfect cue,
as "activity" is in real CLIP features) the same baseline scores 0.88 at scale 0.1 and 0.83 at 0.3 (seed 1),
and on seed 0 UCF AUC 0.884 / AP 0.517 / mAP 19.0, XD AUC 0.899 / AP 0.758 / mAP 31.9
(``cplvad baseline``, configs/train/mil.yaml).
Subtle anomalies, soft edges, class confusions and distractors keep it from being trivial.

Regimes (``REGIMES``, ``--regime``: knobs plus a generator seed of their own, so that no number of the default
benchmark is tuned by them). ``context``: in the default regime every anomalous snippet differs from every normal
one of any video along its class direction, so a per-snippet MIL head is the right model and a temporal one can
only match it. Real footage is not like that: a boxing gym, a demolition site or an action film shows, as its
ordinary activity, what would be fighting, an explosion or violence in another scene, and an anomaly is what
departs from its own scene. In ``context`` a ``context_fraction`` of the videos (normal and anomalous, train and
test alike) hold a class direction for their whole length at an anomaly's strength (``context_strength``, same
log-normal spread): one of its snippets alone looks like an anomaly; the video around it says it is not.

Defaults: ``--scale 0.1`` (161 UCF / 421 XD training videos, all crops) and float16 files: about 0.4 GB (UCF)
and 0.6 GB (XD) and one to two minutes each on two CPU cores; the loader reads float16 or float32 alike.
Every video has its own random stream (seed, split, index): the output is a function of seed and scale only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter
from tqdm import tqdm

from edge.configfile import run_main
from edge.snippets import EMBED_DIM, FRAMES_PER_SNIPPET
from train.data.layouts import SOURCES, frames_from_runs, load_layout, split_by_counts
from train.data.release import CROPS
from train.data.labels import LabelMap, label_map
from train.paths import public_file, shared_data_dir

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
DEFAULT_SCALE = 0.1  # 161 UCF / 421 XD training videos
REGIMES: dict[str, tuple[int, tuple[str, ...]]] = {  # name: (generator seed, knobs); see the module docstring
    "default": (0, ()),
    "context": (2, ("context_fraction=0.3",)),
}


@dataclass(frozen=True)
class Knobs:
    """Generator parameters (norms are L2 norms of 512-d vectors); see the module docstring."""

    image_mean_norm: float = 8.0
    scene_norm: float = 5.0
    drift_dim: int = 16
    drift_rho: float = 0.97
    drift_norm: float = 2.0
    noise_norm: float = 2.0
    crop_offset_norm: float = 1.0
    crop_noise_norm: float = 1.0
    anomaly_strength: float = 3.0
    strength_spread: float = 0.5
    subtle_fraction: float = 0.15
    subtle_factor: float = 0.5
    generic_weight: float = 0.6
    ramp_fraction: float = 0.1
    confusion_tau: float = 0.01
    multi_label_mix: float = 0.3
    distractor_rate: float = 1.5
    distractor_strength: float = 3.0
    distractor_generic_weight: float = 0.3
    length_jitter: float = 0.2
    context_fraction: float = 0.0  # the "context" regime (REGIMES): share of scenes with a class as their activity
    context_strength: float = 3.0


# ------------------------------------------------------------ directions


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def class_directions(text: np.ndarray, generic_weight: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Text embeddings [M,512] (class 0 normal) -> (g [512], anomaly directions [M,512]; row 0 is zero)."""
    anomalous = text[1:]
    g = unit(anomalous.mean(0) - text[0])
    cos = unit(anomalous) @ unit(anomalous).T  # [M-1, M-1]
    confusion = np.exp((cos - cos.max(1, keepdims=True)) / tau)
    confusion /= confusion.sum(1, keepdims=True)
    u = confusion @ (anomalous - anomalous.mean(0))
    u = unit(u - np.outer(u @ g, g))  # class part, orthogonal to g
    d = np.zeros_like(text)
    d[1:] = unit(generic_weight * g + np.sqrt(1 - generic_weight**2) * u)
    return g, d


def ramp(length: int, start: float, end: float, fraction: float) -> np.ndarray:
    """Trapezoid activation [length] of an event on [start, end) snippets, evaluated at snippet centres.

    Rises linearly over ``w = max(1, fraction * (end - start))`` snippets at each end and is 1 in between:
    r(t) = clip((min(t - start, end - t) + 1/2) / w, 0, 1), so even an event shorter than a snippet shows.
    """
    t = np.arange(length) + 0.5
    width = max(1.0, fraction * (end - start))
    return np.clip((np.minimum(t - start, end - t) + 0.5) / width, 0.0, 1.0)


def coverage(length: int, segments: np.ndarray) -> np.ndarray:
    """Fraction [length] of each snippet [t, t+1) covered by the union of segments [S,2] (snippet units)."""
    edges = np.arange(length + 1, dtype=np.float64)
    cover = np.zeros(length)
    for start, end in sorted(map(tuple, segments)):
        cover += np.clip(np.minimum(edges[1:], end) - np.maximum(edges[:-1], start), 0.0, None)
    return np.minimum(cover, 1.0)


# ------------------------------------------------------------ real layout


@dataclass(frozen=True)
class Event:
    start: float  # snippets
    end: float
    cls: int  # 0 = benign distractor


@dataclass(frozen=True)
class RealLayout:
    """What the generator takes from the real annotations of one layout."""

    label_map: LabelMap
    test: list[tuple[str, str, int, np.ndarray, list[Event]]]  # name, label, listed crop, gt frames, events
    train: list[tuple[str, str]]  # name, label (real list order)
    normal_lengths: np.ndarray  # snippets of the real normal test videos
    anomalous_lengths: np.ndarray
    templates: list[tuple[np.ndarray, list[str]]]  # segments as fractions of the video [S,2], their classes
    event_lengths: np.ndarray  # snippets of every real anomaly segment
    segment_npy: bytes  # VadCLIP's gt_segment / gt_label files, byte for byte
    label_npy: bytes


def read_layout(layout: str, data_dir: str | Path | None = None) -> RealLayout:
    """The real layout: the shipped compact file (:mod:`train.data.layouts`), or derived from the original
    files under ``data_dir`` (default ``$CPLVAD_SHARED_DATA`` when set)."""
    data_dir = data_dir if data_dir is not None else shared_data_dir()
    lm = label_map(layout)
    arrays = load_layout(layout, data_dir)
    gt_runs = split_by_counts(arrays["gt_runs"], arrays["gt_run_counts"])
    segments = split_by_counts(arrays["segments"], arrays["segment_counts"])
    labels = split_by_counts(arrays["segment_classes"], arrays["segment_counts"])

    test, normal_lengths, anomalous_lengths, templates, event_lengths = [], [], [], [], []
    for i, (name, label, crop) in enumerate(zip(arrays["test_names"], arrays["test_labels"], arrays["test_crops"])):
        gt = frames_from_runs(int(arrays["test_frames"][i]), gt_runs[i])
        n = gt.size // FRAMES_PER_SNIPPET
        segs = segments[i] / FRAMES_PER_SNIPPET
        classes = [str(c) for c in labels[i]]
        events = [] if classes == ["A"] else [Event(s, e, lm.index(c)) for (s, e), c in zip(segs, classes)]
        test.append((str(name), str(label), int(crop), gt, events))
        if events:
            anomalous_lengths.append(n)
            templates.append((segs / n, classes))
            event_lengths += [e - s for s, e in segs]
        else:
            normal_lengths.append(n)
    train = [(str(name), str(label)) for name, label in zip(arrays["train_names"], arrays["train_labels"])]
    return RealLayout(lm, test, train, np.array(normal_lengths), np.array(anomalous_lengths), templates,
                      np.array(event_lengths), arrays["gt_segment_npy"].tobytes(), arrays["gt_label_npy"].tobytes())


def stratified_subset(labels: list[str], scale: float, rng: np.random.Generator) -> list[int]:
    """Indices of a class-stratified fraction of videos (at least one per label), in list order."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    keep = []
    for idx in by_label.values():
        k = min(len(idx), max(1, round(scale * len(idx))))
        keep += rng.choice(idx, size=k, replace=False).tolist()
    return sorted(keep)


def train_events(rng: np.random.Generator, layout: RealLayout, label: str, length: int) -> list[Event]:
    """Anomaly segments of a training video: a real template rescaled; classes from the video label."""
    primary, multi_hot = layout.label_map.parse(label)
    if primary == 0:
        return []
    fractions, _ = layout.templates[rng.integers(len(layout.templates))]
    classes = [primary] + [c for c in np.flatnonzero(multi_hot) if c != primary]
    order = classes + rng.choice(classes, size=max(0, len(fractions) - len(classes))).tolist()
    events = []
    for (s, e), c in zip(fractions, order[:len(fractions)]):
        start = min(s * length, length - 1.0)
        events.append(Event(start, min(max(e * length, start + 1.0), float(length)), int(c)))  # >= 1 snippet
    return events


# ------------------------------------------------------------ features


class Generator:
    """Feature model of one layout and seed (the directions are shared by all videos)."""

    def __init__(self, text: np.ndarray, seed: int, knobs: Knobs, event_lengths: np.ndarray) -> None:
        self.knobs = knobs
        self.g, self.directions = class_directions(text.astype(np.float64), knobs.generic_weight,
                                                   knobs.confusion_tau)
        rng = np.random.default_rng([seed, 0])
        self.mean = knobs.image_mean_norm * unit(rng.standard_normal(EMBED_DIM))
        self.event_lengths = event_lengths

    def _gauss(self, rng: np.random.Generator, shape: tuple[int, ...], norm: float) -> np.ndarray:
        """Gaussian vectors whose expected L2 norm over the last (512-d) axis is about ``norm``."""
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(norm / np.sqrt(EMBED_DIM))

    def distractors(self, rng: np.random.Generator, length: int) -> list[Event]:
        count = rng.poisson(self.knobs.distractor_rate * length / 100)
        events = []
        for _ in range(count):
            dur = min(float(rng.choice(self.event_lengths)), float(length))
            start = rng.uniform(0, length - dur)
            events.append(Event(start, start + dur, 0))
        return events

    def event_direction(self, rng: np.random.Generator, event: Event, classes: list[int]) -> np.ndarray:
        k = self.knobs
        if event.cls == 0:
            w = k.distractor_generic_weight
            return unit(w * self.g + np.sqrt(1 - w**2) * unit(rng.standard_normal(EMBED_DIM)))
        others = [c for c in classes if c not in (0, event.cls)]
        d = self.directions[event.cls]
        if others:
            d = unit((1 - k.multi_label_mix) * d + k.multi_label_mix * self.directions[others].mean(0))
        return d

    def video(self, rng: np.random.Generator, length: int, events: list[Event], classes: list[int],
              crops: list[int]) -> dict[int, np.ndarray]:
        """Features [length,512] float32 of the requested crops of one video."""
        k = self.knobs
        base = (self.mean + self._gauss(rng, (EMBED_DIM,), k.scene_norm)).astype(np.float32)
        # drift: stationary AR(1) in a random drift_dim-d subspace
        q, _ = np.linalg.qr(rng.standard_normal((EMBED_DIM, k.drift_dim)))
        eps = rng.standard_normal((length, k.drift_dim)) * (k.drift_norm / np.sqrt(k.drift_dim))
        c = np.sqrt(1 - k.drift_rho**2)
        eps[0] /= c
        z = lfilter([c], [1, -k.drift_rho], eps, axis=0).astype(np.float32)  # (T, drift_dim)
        x = z @ q.T.astype(np.float32)  # (T, 512)
        x += base
        x += self._gauss(rng, (length, EMBED_DIM), k.noise_norm)
        for event in events + self.distractors(rng, length):
            strength = k.distractor_strength if event.cls == 0 else k.anomaly_strength
            strength *= rng.lognormal(0.0, k.strength_spread)
            if event.cls != 0 and rng.random() < k.subtle_fraction:
                strength *= k.subtle_factor
            lo, hi = int(event.start), min(length, int(np.ceil(event.end)) + 1)  # the ramp's support
            r = ramp(length, event.start, event.end, k.ramp_fraction)[lo:hi]
            x[lo:hi] += np.outer(strength * r, self.event_direction(rng, event, classes)).astype(np.float32)
        out = {}
        for crop in crops:
            crop_rng = np.random.default_rng([int(rng.integers(2**31)), crop])
            offset = self._gauss(crop_rng, (EMBED_DIM,), k.crop_offset_norm)
            view = self._gauss(crop_rng, (length, EMBED_DIM), k.crop_noise_norm)
            view += x
            view += offset
            out[crop] = view
        if k.context_fraction > 0 and rng.random() < k.context_fraction:  # the last draws: the rest is unchanged
            activity = self.directions[rng.integers(1, len(self.directions))]
            activity = (k.context_strength * rng.lognormal(0.0, k.strength_spread) * activity).astype(np.float32)
            for view in out.values():
                view += activity
        return out


# ------------------------------------------------------------ writing


def generate(layout: str, out: str | Path, seed: int = 0, scale: float = DEFAULT_SCALE,
             dtype: str = "float16", knobs: Knobs | None = None, data_dir: str | Path | None = None,
             force: bool = False, workers: int = 1, regime: str = "default") -> dict:
    """Write the dataset (videos generated in ``workers`` processes); returns the dataset.json content."""
    t0 = time.perf_counter()
    out = Path(out)
    if not 0 < scale <= 1:
        raise ValueError(f"--scale {scale}: expected a fraction in (0, 1]")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"--dtype {dtype!r}: expected float16 or float32")
    if layout not in SOURCES:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(SOURCES)}")
    knobs = knobs or Knobs()
    data_dir = Path(data_dir) if data_dir is not None else shared_data_dir()
    real = read_layout(layout, data_dir)
    text_file = ("text_embeddings", f"{layout}-prompt.npy")
    text = np.load(data_dir.joinpath(*text_file) if data_dir is not None else public_file(*text_file))
    if text.shape != (real.label_map.num_classes, EMBED_DIM):
        raise ValueError(f"text embeddings of {layout}: shape {text.shape}, expected "
                         f"({real.label_map.num_classes}, {EMBED_DIM})")
    gen = Generator(text, seed, knobs, real.event_lengths)

    features = out / "features"
    if features.exists() and any(features.iterdir()):
        if not force:
            raise FileExistsError(f"{features} is not empty; pass --force to replace the generated dataset")
        shutil.rmtree(features)
    features.mkdir(parents=True, exist_ok=True)

    job = _Job(gen, real, out, dtype, seed, layout, knobs)
    # test: the real layout, the crop the real list names
    test_rows, gt_frames = [], []
    for row, gt in _map(_test_video, job, range(len(real.test)), workers, f"{layout} test"):
        test_rows.append(row)
        gt_frames.append(gt)
    np.save(out / "gt_frames.npy", np.concatenate(gt_frames))
    (out / "gt_segment.npy").write_bytes(real.segment_npy)
    (out / "gt_label.npy").write_bytes(real.label_npy)

    # train: a stratified fraction of the real list, lengths and segments drawn from the real test layout
    pick_rng = np.random.default_rng([seed, 2])
    chosen = stratified_subset([label for _, label in real.train], scale, pick_rng)
    train_rows, truth = [], {}
    for rows, video_truth in _map(_train_video, job, chosen, workers, f"{layout} train"):
        train_rows += rows
        truth |= video_truth
    np.savez_compressed(out / "train_truth.npz", **truth)

    for fname, rows in (("train.csv", train_rows), ("test.csv", test_rows)):
        (out / fname).write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    meta = {
        "layout": layout, "regime": regime, "seed": seed, "scale": scale, "dtype": dtype,
        "generator_version": GENERATOR_VERSION,
        "train_videos": len(chosen), "test_videos": len(real.test), "crops": CROPS[layout],
        "knobs": dataclasses.asdict(knobs),
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("%s: %d train + %d test videos, %.0f MB in %.1f s", out, len(chosen), len(real.test),
             size / 2**20, time.perf_counter() - t0)
    return meta


@dataclass(frozen=True)
class _Job:
    """What writing one video needs; worker processes inherit it (fork)."""

    gen: Generator
    real: RealLayout
    out: Path
    dtype: str
    seed: int
    layout: str
    knobs: Knobs

    def save(self, name: str, crop: int, x: np.ndarray) -> str:
        rel = f"features/{name}__{crop}.npy"
        np.save(self.out / rel, x.astype(self.dtype))
        return rel


def _test_video(job: _Job, i: int) -> tuple[tuple[str, str], np.ndarray]:
    """Test video ``i``: its list row (path, label) and its ground-truth frames."""
    name, label, crop, gt, events = job.real.test[i]
    rng = np.random.default_rng([job.seed, 1, i])
    classes = list(np.flatnonzero(job.real.label_map.parse(label)[1]))
    x = job.gen.video(rng, gt.size // FRAMES_PER_SNIPPET, events, classes, [crop])[crop]
    return (job.save(name, crop, x), label), gt


def _train_video(job: _Job, i: int) -> tuple[list[tuple[str, str]], dict[str, np.ndarray]]:
    """Training video ``i`` of the real list: its list rows (one per crop) and its snippet truth."""
    real, knobs = job.real, job.knobs
    name, label = real.train[i]
    rng = np.random.default_rng([job.seed, 3, i])
    primary, multi_hot = real.label_map.parse(label)
    lengths = real.normal_lengths if primary == 0 else real.anomalous_lengths
    jitter = rng.uniform(1 - knobs.length_jitter, 1 + knobs.length_jitter)
    length = max(2, round(float(rng.choice(lengths)) * jitter))
    events = train_events(rng, real, label, length)
    crops = list(range(CROPS[job.layout]))
    rows = [(job.save(name, crop, x), label)
            for crop, x in job.gen.video(rng, length, events, list(np.flatnonzero(multi_hot)), crops).items()]
    spans = np.array([[e.start, e.end] for e in events]).reshape(-1, 2)
    return rows, {f"binary/{name}": (coverage(length, spans) >= 0.5).astype(np.float32),
                  f"classes/{name}": _class_truth(length, events)}


_WORKER_JOB: _Job | None = None  # set in each worker process by _start_worker


def _start_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _call(task: tuple[Callable, int]):
    fn, i = task
    return fn(_WORKER_JOB, i)


def _map(fn: Callable, job: _Job, items: Iterable[int], workers: int, desc: str) -> Iterator:
    """``fn(job, i)`` for each item, in order; with ``workers`` > 1 in that many forked processes (each video has
    its own random stream, so the output is the same)."""
    items = list(items)
    if workers <= 1:
        yield from (fn(job, i) for i in tqdm(items, desc=desc, unit="video"))
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_start_worker, initargs=(job,)) as pool:
        yield from tqdm(pool.imap(_call, [(fn, i) for i in items], chunksize=4), total=len(items), desc=desc,
                        unit="video")


def _class_truth(length: int, events: list[Event]) -> np.ndarray:
    """Per-snippet class index [length] int16 (0 = normal): the class covering most of the snippet."""
    covers = np.zeros((max([e.cls for e in events], default=0) + 1, length))
    for e in events:
        covers[e.cls] = np.maximum(covers[e.cls], coverage(length, np.array([[e.start, e.end]])))
    classes = covers.argmax(0).astype(np.int16)
    classes[covers.max(0) < 0.5] = 0
    return classes


def parse_knobs(settings: list[str]) -> Knobs:
    """``["name=value", ...]`` -> Knobs with those fields changed (typed like the defaults)."""
    fields = {f.name: f for f in dataclasses.fields(Knobs)}
    changes = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--knob {item!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}")
        kind = type(getattr(Knobs(), name))
        try:
            changes[name] = kind(value)
        except ValueError:
            raise SystemExit(f"--knob {item!r}: {value!r} is not a {kind.__name__}") from None
    return dataclasses.replace(Knobs(), **changes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cplvad synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=sorted(SOURCES), required=True)
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default 0, or the regime's)")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="default",
                        help="a documented benchmark regime: its knobs and its own generator seed (docstring)")
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help="fraction of the real training list, stratified by label (default %(default)s)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="feature file dtype (the release uses float32; float16 halves the disk)")
    parser.add_argument("--data-dir", default=None,
                        help="folder of the original annotation, gt and text-embedding files (default: the "
                             "compact copies shipped in train/data/public/)")
    parser.add_argument("--force", action="store_true", help="replace an existing generated dataset")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes generating videos (the output is the same for any number)")
    parser.add_argument("--set", "--knob", dest="knob", action="append", default=[], metavar="KNOB=VALUE",
                        help="change a generator knob (repeatable), e.g. --set distractor_rate=3")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    regime_seed, regime_knobs = REGIMES[args.regime]
    generate(args.layout, args.out, regime_seed if args.seed is None else args.seed, args.scale, args.dtype,
             knobs=parse_knobs([*regime_knobs, *args.knob]), data_dir=args.data_dir, force=args.force,
             workers=args.workers, regime=args.regime)
    log.info("next: cplvad baseline --data %s --out runs/mil_%s", args.out, args.layout)


if __name__ == "__main__":  # an alias of `cplvad synth`
    raise SystemExit(run_main(main, prog="cplvad synth"))
