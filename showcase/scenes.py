"""Rendered demo scenes: street scenes with known anomalies, for an end-to-end demo without real CLIP weights.

A frozen image encoder with random weights still responds to what changes the pixels' layout and colour,
so the anomalies are made to change what a single frame looks like, not only how things move:

- ``Normal``: slow traffic of cars and pedestrians on a textured street; the street (background, palette,
  buildings, lanes) is one of a few camera views (``--views``), the traffic (speeds, counts, colours), the
  illumination drift and the sensor noise vary per video. Held-out videos come from views seen in training, as
  on a deployed camera, whose normal is its own street.
- ``Arson``: a flickering orange fire that grows at one spot, with smoke above it, then goes out.
- ``Fighting``: two pedestrians near the camera run in, grapple (fast erratic contact, flailing limbs, motion
  blur), then run off.
- ``Explosion``: an expanding white-yellow flash that lights the whole frame, a fireball, debris, and a smoke
  cloud that fades.

Each anomalous video has normal frames before and after the anomaly; its window is ``[onset_frame,
offset_frame)`` (offset exclusive). Training uses video-level labels only (``labels.csv``); the frame
windows are in ``gt.json`` for scoring. Labels are UCF-Crime class codes (``train.data.labels.UCF``).

Budget. The demo extracts features with the real-size ViT-B/16 on CPU (~4 images/s on 2 cores, fp32, batch 8).
``make demo``: 48 videos x 256 frames (16 s at 16 fps, 320x240) = 768 snippets of 16 frames; with
``encode_every=16`` that is 768 images, about 3.5 minutes at that rate (7 minutes measured on cores shared with
other jobs). Rendering costs about 4 ms of CPU per frame (~1 min).

Output (``--out DIR``)::

    videos/<name>.mp4          mp4v, 320x240, 16 fps
    train.txt, test.txt        the split: one video path per line, relative to DIR
    labels.csv                 name,label   (every video; label a UCF code)
    gt.json                    per video: label, split, frames, onset_frame, offset_frame (null for normal)

which is what the feature extractor reads::

    cplvad extract --videos DIR/train.txt --labels DIR/labels.csv --out FEATURES/train

The output is deterministic per ``--seed`` (same frames; the mp4 bytes depend on the OpenCV build's encoder).

    python -m showcase.scenes --out data/scenes --seed 0 [--videos 30] [--frames 256] [--fast]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 320, 240, 16
CLASSES = ("Normal", "Arson", "Fighting", "Explosion")  # UCF-Crime codes
# Class of video i: one of each first, then half of the videos normal.
_CYCLE = ("Normal", "Arson", "Fighting", "Explosion", "Normal", "Normal")
DEFAULT_VIDEOS, DEFAULT_FRAMES, DEFAULT_VIEWS = 30, 256, 4
FAST_VIDEOS, FAST_FRAMES = 12, 128
MIN_FRAMES = 32


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """One video to render."""

    name: str
    label: str  # one of CLASSES
    split: str  # "train" or "test"
    frames: int
    onset: int | None  # first anomalous frame (None for normal videos)
    offset: int | None  # first normal frame after the anomaly (exclusive end)
    seed: int  # traffic, lighting, noise and the anomaly's spot
    view: int = 0  # which camera view (street, buildings, lanes) the video is from
    view_seed: int = 0

    def frame_labels(self) -> np.ndarray:
        """Frame-level ground truth [frames] float32: 1 inside the anomaly window."""
        labels = np.zeros(self.frames, np.float32)
        if self.onset is not None:
            labels[self.onset:self.offset] = 1.0
        return labels


def split_counts(n: int, test_fraction: float) -> int:
    """Held-out videos of a class with n videos: n * fraction rounded half up, in [1, n - 1] (0 if n < 2)."""
    if n < 2:
        return 0
    return min(n - 1, max(1, math.floor(n * test_fraction + 0.5)))


def plan_scenes(seed: int, videos: int = DEFAULT_VIDEOS, frames: int = DEFAULT_FRAMES,
                test_fraction: float = 0.3, views: int = DEFAULT_VIEWS) -> list[SceneSpec]:
    """The videos of a dataset: classes in turn, a random anomaly window per video, the last of each class
    held out; video i is seen by camera view i mod ``views`` (``views >= videos``: every video its own street)."""
    if videos < len(CLASSES):
        raise ValueError(f"--videos must be at least {len(CLASSES)} (one per class: {', '.join(CLASSES)}), "
                         f"got {videos}")
    if frames < MIN_FRAMES:
        raise ValueError(f"--frames must be at least {MIN_FRAMES} (two snippets), got {frames}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if views < 1:
        raise ValueError(f"--views must be at least 1, got {views}")
    labels = [_CYCLE[i % len(_CYCLE)] for i in range(videos)]
    seeds = np.random.SeedSequence(seed).generate_state(videos)
    view_seeds = np.random.SeedSequence([seed, 7]).generate_state(views)
    held_out = {c: split_counts(labels.count(c), test_fraction) for c in CLASSES}
    seen = dict.fromkeys(CLASSES, 0)
    specs = []
    for i, (label, video_seed) in enumerate(zip(labels, seeds)):
        seen[label] += 1
        split = "test" if seen[label] > labels.count(label) - held_out[label] else "train"
        onset = offset = None
        if label != "Normal":
            rng = np.random.default_rng([seed, i, 1])
            onset = int(frames * rng.uniform(0.2, 0.4))
            offset = onset + int(frames * rng.uniform(0.35, 0.5))
        name = f"{label.lower()}_{i:03d}"
        specs.append(SceneSpec(name, label, split, frames, onset, offset, int(video_seed), i % views,
                               int(view_seeds[i % views])))
    return specs


# -- the street -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Mover:
    kind: str  # "car" or "person"
    x0: float
    y: float
    vx: float  # px per frame
    size: float
    colour: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class _Street:
    background: np.ndarray  # [H, W, 3] uint8
    movers: tuple[_Mover, ...]
    noise_sd: float
    drift_period: float  # frames per illumination cycle
    spot: tuple[float, float]  # where the anomaly happens (x, y)
    colours: tuple[tuple[int, int, int], ...]  # palette for the anomaly's actors


def _colour(rng: np.random.Generator, sat: tuple[int, int], val: tuple[int, int]) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(*sat), rng.integers(*val)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _view(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int, int]:
    """A camera view: a textured street with lanes, kerbs and blocks -> (background, road top, road bottom)."""
    base = np.array(_colour(rng, (10, 90), (70, 170)), np.float32)
    coarse = rng.normal(0, 18, (h // 20, w // 20, 1)).astype(np.float32)
    texture = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    fine = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    bg = np.clip(base + texture + fine, 0, 255).astype(np.uint8)
    road_top = int(h * rng.uniform(0.35, 0.5))
    road_bottom = min(h - 10, road_top + int(h * rng.uniform(0.3, 0.42)))
    for _ in range(int(rng.integers(3, 7))):  # blocks above the road
        x, bw = int(rng.integers(0, w - 30)), int(rng.integers(25, 80))
        top = int(rng.integers(5, max(6, road_top - 30)))
        cv2.rectangle(bg, (x, top), (x + bw, road_top - 4), _colour(rng, (20, 120), (60, 200)), -1)
    road = np.array(_colour(rng, (0, 25), (50, 110)), np.float32)
    band = bg[road_top:road_bottom].astype(np.float32)
    bg[road_top:road_bottom] = np.clip(0.25 * band + 0.75 * road, 0, 255).astype(np.uint8)
    mid = (road_top + road_bottom) // 2
    dash, gap = int(rng.integers(10, 24)), int(rng.integers(8, 20))
    for x in range(int(rng.integers(0, dash + gap)) - dash, w, dash + gap):
        cv2.rectangle(bg, (x, mid - 1), (x + dash, mid + 1), (215, 225, 230), -1)
    cv2.line(bg, (0, road_top), (w, road_top), (150, 150, 150), 2)
    cv2.line(bg, (0, road_bottom), (w, road_bottom), (150, 150, 150), 2)
    return bg, road_top, road_bottom


def _street(view: np.random.Generator, rng: np.random.Generator, w: int, h: int) -> _Street:
    """The street of the camera ``view`` (random per view), and the traffic on it, the lighting, the noise and
    the anomaly's spot (random per video, ``rng``)."""
    bg, road_top, road_bottom = _view(view, w, h)
    mid = (road_top + road_bottom) // 2
    movers = []
    lanes = ((road_top + mid) / 2, (mid + road_bottom) / 2)
    for _ in range(int(rng.integers(2, 6))):
        lane = int(rng.integers(0, 2))
        movers.append(_Mover("car", rng.uniform(0, w), lanes[lane] + rng.uniform(-3, 3),
                             (1 if lane else -1) * rng.uniform(0.4, 1.8), rng.uniform(14, 26),
                             _colour(rng, (40, 220), (60, 230))))
    walk = (road_top - 8, min(h - 6, road_bottom + 12))
    for _ in range(int(rng.integers(1, 5))):
        movers.append(_Mover("person", rng.uniform(0, w), float(walk[int(rng.integers(0, 2))]),
                             rng.choice([-1, 1]) * rng.uniform(0.2, 0.7), rng.uniform(6, 9),
                             _colour(rng, (40, 200), (60, 220))))
    spot = (rng.uniform(0.25, 0.75) * w, rng.uniform(road_top + 5, road_bottom - 5))
    colours = tuple(_colour(rng, (80, 230), (90, 230)) for _ in range(2))
    noise_sd, drift_period = float(rng.uniform(1.5, 4.0)), float(rng.uniform(60, 200))
    return _Street(bg, tuple(movers), noise_sd, drift_period, spot, colours)


def _draw_person(img: np.ndarray, x: float, y: float, size: float, colour: tuple[int, int, int]) -> None:
    """A pedestrian standing at (x, y) (feet): an elliptic body and a head."""
    cx, cy = int(x), int(y - 1.6 * size)
    cv2.ellipse(img, (cx, cy), (int(size * 0.55), int(size * 1.4)), 0, 0, 360, colour, -1, cv2.LINE_AA)
    cv2.circle(img, (cx, int(cy - 1.9 * size)), int(size * 0.55), (150, 170, 200), -1, cv2.LINE_AA)


def _draw_traffic(img: np.ndarray, movers: tuple[_Mover, ...], t: int) -> None:
    w = img.shape[1]
    for m in movers:
        span = w + 4 * m.size
        x = (m.x0 + m.vx * t) % span - 2 * m.size
        if m.kind == "car":
            half_w, half_h = m.size, m.size * 0.45
            p0, p1 = (int(x - half_w), int(m.y - half_h)), (int(x + half_w), int(m.y + half_h))
            cv2.rectangle(img, p0, p1, m.colour, -1, cv2.LINE_AA)
            cv2.rectangle(img, (int(x - half_w * 0.4), p0[1] + 2), (int(x + half_w * 0.4), p1[1] - 2),
                          (60, 60, 60), -1)
        else:
            _draw_person(img, x, m.y, m.size, m.colour)


def _blobs(grid: tuple[np.ndarray, np.ndarray], centres: list[tuple[float, float, float, float]]
           ) -> np.ndarray:
    """Max of anisotropic Gaussian blobs (cx, cy, sx, sy) on the pixel grid -> [H, W] in [0, 1]."""
    xs, ys = grid
    out = np.zeros(xs.shape, np.float32)
    for cx, cy, sx, sy in centres:
        np.maximum(out, np.exp(-(((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2)), out=out)
    return out


def _blend(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """img * (1 - alpha) + colour * alpha; colour [3] or [H, W, 3], alpha [H, W] in [0, 1]."""
    a = alpha[..., None]
    return img * (1 - a) + colour * a


def _arson(img: np.ndarray, rng: np.random.Generator, p: float, street: _Street, grid) -> np.ndarray:
    """A fire at the spot: grows over the window, flickers every frame, goes out at the end."""
    x, y = street.spot
    grow = min(1.0, 0.15 + 1.3 * p) * min(1.0, (1 - p) / 0.08)
    r = 10 + 60 * grow
    flames = [(x + rng.normal(0, 0.35 * r), y - rng.uniform(0, 1.2 * r), r * rng.uniform(0.25, 0.5),
               r * rng.uniform(0.5, 0.9)) for _ in range(6)]
    heat = _blobs(grid, flames) * rng.uniform(0.7, 1.0)
    smoke = _blobs(grid, [(x + rng.normal(0, 3), y - 1.8 * r - 12 * k, 1.2 * r, 0.8 * r) for k in range(3)])
    img = _blend(img, np.float32([70, 70, 75]), 0.7 * grow * smoke)
    colour = np.where(heat[..., None] > 0.6, np.float32([90, 235, 255]), np.float32([20, 120, 255]))
    return _blend(img, colour, np.clip(1.3 * heat, 0, 1))


def _fighting(img: np.ndarray, rng: np.random.Generator, t: int, spec: SceneSpec, street: _Street
              ) -> np.ndarray:
    """Two pedestrians run in to the spot, grapple erratically during the window, then run off. They are near
    the camera (twice a passer-by's size), as a fight that a camera should catch would be."""
    x, y = street.spot
    size = 16.0
    assert spec.onset is not None and spec.offset is not None
    if t < spec.onset:
        gap = 20 + 4.0 * (spec.onset - t)
    elif t >= spec.offset:
        gap = 20 + 4.0 * (t - spec.offset)
    else:
        gap = None
    if gap is not None:  # running in or off: upright, off-screen a few seconds away from the fight
        _draw_person(img, x - gap, y, size, street.colours[0])
        _draw_person(img, x + gap, y, size, street.colours[1])
        return img
    out = img.astype(np.uint8)
    ghost = out.copy()
    pos = []
    for k, side in enumerate((-1, 1)):
        px, py = x + side * rng.uniform(4, 16) + rng.normal(0, 7), y + rng.normal(0, 5)
        pos.append((px, py))
        _draw_person(ghost, px - side * rng.uniform(10, 24), py + rng.normal(0, 7), size, street.colours[k])
    out = cv2.addWeighted(out, 0.5, ghost, 0.5, 0)  # motion blur: where they just were
    for k, (px, py) in enumerate(pos):
        _draw_person(out, px, py, size, street.colours[k])
        for _ in range(3):  # flailing arms
            angle = rng.uniform(0, 2 * math.pi)
            sx, sy = int(px), int(py - 2.6 * size)
            hand = (int(sx + 2.2 * size * math.cos(angle)), int(sy + 2.2 * size * math.sin(angle)))
            cv2.line(out, (sx, sy), hand, street.colours[k], 5, cv2.LINE_AA)
    if rng.random() < 0.5:  # an impact
        cx, cy = int(x + rng.normal(0, 5)), int(y - 2.5 * size + rng.normal(0, 7))
        for _ in range(5):
            angle = rng.uniform(0, 2 * math.pi)
            cv2.line(out, (cx, cy), (int(cx + 16 * math.cos(angle)), int(cy + 16 * math.sin(angle))),
                     (235, 245, 255), 2, cv2.LINE_AA)
    return out


def _explosion(img: np.ndarray, rng: np.random.Generator, p: float, street: _Street, grid,
               debris: np.ndarray) -> np.ndarray:
    """Flash (whole frame brightens), expanding fireball, flying debris, then a smoke cloud that fades."""
    x, y = street.spot
    h = img.shape[0]
    img = img + 150.0 * max(0.0, 1 - p / 0.2)  # the flash lights the scene
    radius = max(2.0, 0.55 * h * min(1.0, math.sqrt(p / 0.12)))
    fade = max(0.0, 1 - p / 0.5)
    ball_size = (radius * rng.uniform(0.9, 1.05), radius * rng.uniform(0.8, 0.95))
    ball = _blobs(grid, [(x, y - 0.2 * radius, *ball_size)])
    smoke_r = 0.2 * h + 0.25 * h * p  # puffs of smoke at fixed offsets (the first debris directions)
    smoke = _blobs(grid, [(x + 0.5 * smoke_r * dx, y - 0.6 * smoke_r + 0.3 * smoke_r * dy, 0.45 * smoke_r,
                           0.4 * smoke_r) for dx, dy in debris[:6]])
    img = _blend(img, np.float32([35, 35, 40]), min(1.0, 3 * p) * (1 - p) ** 0.4 * np.clip(2 * smoke, 0, 1))
    hot = np.where(ball[..., None] > 0.5, np.float32([200, 250, 255]), np.float32([30, 150, 255]))
    img = _blend(np.clip(img, 0, 255), hot, np.clip(1.4 * ball * fade, 0, 1))
    if p < 0.6:  # debris flying outwards
        pts = debris * p * h
        for dx, dy in pts:
            cv2.circle(img, (int(x + dx), int(y + dy)), 2, (25, 25, 25), -1)
    return img


def render_frames(spec: SceneSpec, width: int = WIDTH, height: int = HEIGHT) -> Iterator[np.ndarray]:
    """The frames of one video, [H, W, 3] uint8 BGR, deterministic per ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    street = _street(np.random.default_rng(spec.view_seed), rng, width, height)
    grid = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    debris = rng.normal(0, 1, (14, 2)) * np.float32([1.0, 0.7]) - np.float32([0, 0.4])
    for t in range(spec.frames):
        img = street.background.copy()
        _draw_traffic(img, street.movers, t)
        frame = img.astype(np.float32)
        inside = spec.onset is not None and spec.onset <= t < spec.offset
        if spec.label == "Fighting":
            frame = _fighting(img, rng, t, spec, street).astype(np.float32)
        elif inside:
            p = (t - spec.onset) / (spec.offset - spec.onset)
            if spec.label == "Arson":
                frame = _arson(frame, rng, p, street, grid)
            elif spec.label == "Explosion":
                frame = _explosion(frame, rng, p, street, grid, debris)
        gain = 1 + 0.04 * math.sin(2 * math.pi * t / street.drift_period)
        noise = rng.standard_normal((height, width, 3), dtype=np.float32) * street.noise_sd
        yield np.clip(frame * gain + noise, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: Iterator[np.ndarray], fps: float = FPS,
                size: tuple[int, int] = (WIDTH, HEIGHT)) -> int:
    """Write frames as mp4v; returns the number written."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}: OpenCV's VideoWriter has no mp4v encoder here")
    n = 0
    try:
        for frame in frames:
            writer.write(frame)
            n += 1
    finally:
        writer.release()
    return n


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, decoded in order (BGR [H, W, 3]): for offline checks of short clips."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def write_scene_video(path: Path, label: str = "Explosion", *, frames: int = DEFAULT_FRAMES, fps: float = FPS,
                      size: tuple[int, int] = (WIDTH, HEIGHT), seed: int = 0) -> SceneSpec:
    """One rendered video of class ``label`` (a stand-in for real footage in tests and benchmarks)."""
    spec = next(s for s in plan_scenes(seed, videos=len(CLASSES), frames=frames) if s.label == label)
    write_video(Path(path), render_frames(spec, *size), fps, size)
    return spec


def write_scenes(out: Path, specs: list[SceneSpec], *, seed: int) -> dict:
    """Render every video into ``out`` and write the split lists and the ground truth; returns the gt dict."""
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for spec in tqdm(specs, desc="rendering scenes", unit="video"):
        written = write_video(out / "videos" / f"{spec.name}.mp4", render_frames(spec))
        assert written == spec.frames
    for split in ("train", "test"):
        paths = [f"videos/{s.name}.mp4\n" for s in specs if s.split == split]
        (out / f"{split}.txt").write_text("".join(paths))
    with open(out / "labels.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["name", "label"])
        rows.writerows([s.name, s.label] for s in specs)
    gt = {
        "fps": FPS, "width": WIDTH, "height": HEIGHT, "seed": seed, "classes": list(CLASSES),
        "window": "frames [onset_frame, offset_frame) are anomalous; null for normal videos",
        "videos": {s.name: {"label": s.label, "split": s.split, "frames": s.frames,
                            "onset_frame": s.onset, "offset_frame": s.offset, "view": s.view} for s in specs},
    }
    (out / "gt.json").write_text(json.dumps(gt, indent=1) + "\n")
    return gt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m showcase.scenes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, help=f"number of videos (default {DEFAULT_VIDEOS}, "
                                                   f"{FAST_VIDEOS} with --fast)")
    parser.add_argument("--frames", type=int, help=f"frames per video (default {DEFAULT_FRAMES}, "
                                                   f"{FAST_FRAMES} with --fast)")
    parser.add_argument("--views", type=int, default=DEFAULT_VIEWS,
                        help="camera views (streets) the videos share: held-out videos come from views seen in "
                             f"training, as on a deployed camera (default {DEFAULT_VIEWS})")
    parser.add_argument("--fast", action="store_true", help="a small set for quick runs and tests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    videos = args.videos or (FAST_VIDEOS if args.fast else DEFAULT_VIDEOS)
    frames = args.frames or (FAST_FRAMES if args.fast else DEFAULT_FRAMES)
    try:
        specs = plan_scenes(args.seed, videos, frames, views=args.views)
    except ValueError as exc:
        parser.error(str(exc))
    write_scenes(args.out, specs, seed=args.seed)
    counts = {split: sum(s.split == split for s in specs) for split in ("train", "test")}
    log.info("wrote %d videos (%d train, %d test) x %d frames to %s; next: cplvad extract "
             "--videos %s --labels %s --out <features>", len(specs), counts["train"], counts["test"], frames,
             args.out, args.out / "train.txt", args.out / "labels.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
