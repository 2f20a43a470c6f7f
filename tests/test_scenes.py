"""Rendered demo scenes: plan, determinism, visible anomalies, and the files the CLI writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.data.labels import UCF
from showcase.scenes import CLASSES, HEIGHT, WIDTH, SceneSpec, main, plan_scenes, render_frames, split_counts


def test_split_counts() -> None:
    assert [split_counts(n, 0.3) for n in (0, 1, 2, 3, 5, 15)] == [0, 0, 1, 1, 2, 5]
    assert split_counts(4, 0.9) == 3  # always one left for training


def test_plan_default_mix_and_windows() -> None:
    specs = plan_scenes(seed=0, videos=30, frames=256)
    by_class = {c: [s for s in specs if s.label == c] for c in CLASSES}
    assert [len(by_class[c]) for c in CLASSES] == [15, 5, 5, 5]
    assert [sum(s.split == "test" for s in by_class[c]) for c in CLASSES] == [5, 2, 2, 2]
    assert len({s.seed for s in specs}) == 30 and len({s.name for s in specs}) == 30
    for s in specs:
        if s.label == "Normal":
            assert s.onset is None and s.offset is None and not s.frame_labels().any()
        else:  # normal frames before and after the window
            assert int(0.2 * 256) <= s.onset < s.offset <= 0.9 * 256
            assert s.frame_labels().sum() == s.offset - s.onset
    assert plan_scenes(seed=0, videos=30, frames=256) == specs
    assert plan_scenes(seed=1, videos=30, frames=256) != specs


def test_plan_rejects_too_small_sets() -> None:
    with pytest.raises(ValueError, match="--videos must be at least 4"):
        plan_scenes(0, videos=3)
    with pytest.raises(ValueError, match="--frames must be at least 32"):
        plan_scenes(0, videos=4, frames=16)


def _render(label: str, seed: int = 5) -> tuple[SceneSpec, np.ndarray]:
    spec = next(s for s in plan_scenes(seed, videos=4, frames=64) if s.label == label)
    return spec, np.stack(list(render_frames(spec))).astype(np.int16)  # [T, H, W, 3] BGR


def test_rendering_is_deterministic() -> None:
    spec = plan_scenes(2, videos=4, frames=32)[1]
    a, b = list(render_frames(spec)), list(render_frames(spec))
    assert len(a) == 32 and a[0].shape == (HEIGHT, WIDTH, 3) and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = plan_scenes(3, videos=4, frames=32)[1]
    assert not np.array_equal(a[0], next(render_frames(other)))


def test_anomalies_change_what_a_frame_looks_like() -> None:
    spec, frames = _render("Arson")
    inside = spec.frame_labels().astype(bool)
    red_minus_blue = (frames[..., 2] - frames[..., 0]).mean(axis=(1, 2))
    assert red_minus_blue[inside].mean() > red_minus_blue[~inside].mean() + 5  # orange fire

    spec, frames = _render("Explosion")
    inside = spec.frame_labels().astype(bool)
    brightness = frames.mean(axis=(1, 2, 3))
    assert brightness[inside].max() > brightness[~inside].max() + 60  # the flash
    assert np.argmax(brightness) == spec.onset

    spec, frames = _render("Fighting")
    inside = spec.frame_labels().astype(bool)
    big_change = np.r_[0, (np.abs(np.diff(frames, axis=0)).max(axis=3) > 40).mean(axis=(1, 2))]
    assert big_change[inside].mean() > 2 * big_change[~inside][1:].mean()  # fast erratic motion

    _, normal = _render("Normal")
    assert np.abs(np.diff(normal, axis=0)).mean() < 6  # slow traffic and sensor noise only


def test_cli_writes_videos_lists_and_ground_truth(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--seed", "1", "--videos", "8", "--frames", "40"]) == 0
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert (gt["fps"], gt["width"], gt["height"], gt["classes"]) == (16, WIDTH, HEIGHT, list(CLASSES))
    assert len(gt["videos"]) == 8
    splits = {line: split for split in ("train", "test")
              for line in (tmp_path / f"{split}.txt").read_text().splitlines()}
    with open(tmp_path / "labels.csv") as f:
        labels = {row["name"]: row["label"] for row in csv.DictReader(f)}
    assert len(splits) == len(labels) == 8 and set(splits.values()) == {"train", "test"}
    for name, entry in gt["videos"].items():
        label, split = labels[name], splits[f"videos/{name}.mp4"]
        assert (entry["label"], entry["split"], entry["frames"]) == (label, split, 40)
        assert UCF.parse(label)[0] == UCF.codes.index(label)
        assert (entry["onset_frame"] is None) == (label == "Normal")
        cap = cv2.VideoCapture(str(tmp_path / "videos" / f"{name}.mp4"))
        count = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (HEIGHT, WIDTH, 3)
            count += 1
        assert count == 40 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(16)


def test_videos_of_one_view_share_the_street_and_differ_in_traffic() -> None:
    specs = plan_scenes(seed=0, videos=12, frames=32, views=4)
    assert [s.view for s in specs] == [i % 4 for i in range(12)]
    assert {s.view for s in specs if s.split == "test"} <= {s.view for s in specs if s.split == "train"}
    first = {s.name: next(render_frames(s)).astype(np.int16) for s in specs if s.view in (0, 1)}
    same = [first[s.name] for s in specs if s.view == 0]
    other = [first[s.name] for s in specs if s.view == 1]
    # the same street: most pixels agree up to noise and traffic; another view's street does not
    assert (np.abs(same[0] - same[1]).max(axis=2) < 30).mean() > 0.8
    assert (np.abs(same[0] - other[0]).max(axis=2) < 30).mean() < 0.5
    assert not np.array_equal(same[0], same[1])  # their traffic and noise differ
    with pytest.raises(ValueError, match="--views"):
        plan_scenes(0, videos=8, views=0)
