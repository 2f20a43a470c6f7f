"""train.data.extract at archive scale: shards (--shard I/N or torchrun ranks), resume, one merged list."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.data.extract import cpu_threads, main, parse_shard, shard_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five short rendered videos (32 frames: 2 snippets) in a folder."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(5):
        writer = cv2.VideoWriter(str(folder / f"v{i}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64))
        for t in range(32):
            frame = np.full((64, 96, 3), (30 * i, 80, 200 - 30 * i), np.uint8)
            cv2.circle(frame, (10 + 2 * t, 32), 8, (255, 255, 255), -1)
            writer.write(frame)
        writer.release()
    return folder


def _listed(out: Path) -> list[str]:
    with open(out / "list.csv") as f:
        return [Path(row["path"]).name for row in csv.DictReader(f)]


def test_parse_shard_from_flag_or_torchrun_env() -> None:
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(None, {"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3) and parse_shard(None, {}) == (0, 1)
    for bad in ("4/4", "x", "1/2/3", "-1/2"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_shards_cover_the_list_once_round_robin() -> None:
    videos = [Path(f"v{i}") for i in range(7)]
    shards = [shard_videos(videos, i, 3) for i in range(3)]
    assert shards[0] == [Path("v0"), Path("v3"), Path("v6")]
    assert sorted(v for s in shards for v in s) == sorted(videos)


def test_threads_split_the_cores_among_local_shards() -> None:
    assert cpu_threads(3, 2, None) == 3 and cpu_threads(None, 1, None) is None
    assert cpu_threads(None, 2, "cuda:0") is None and cpu_threads(None, 64, None) == 1


def test_two_shards_then_one_merged_list_and_resume(videos: Path, tmp_path: Path) -> None:
    args = ["--videos", str(videos), "--out", str(tmp_path), "--clip", "tiny", "--batch", "8"]
    assert main([*args, "--shard", "0/2"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["v0__0.npy", "v2__0.npy", "v4__0.npy"]
    assert not (tmp_path / "list.csv").exists()  # shard 1 has not finished
    assert main([*args, "--shard", "1/2"]) == 0  # the last shard to finish merges
    assert _listed(tmp_path) == [f"v{i}__0.npy" for i in range(5)]  # the list's order, every video once

    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    (tmp_path / "v3__0.npy").unlink()
    assert main([*args, "--merge"]) == 1  # v3 missing: listed without it, exit 1
    assert _listed(tmp_path) == ["v0__0.npy", "v1__0.npy", "v2__0.npy", "v4__0.npy"]
    assert main([*args, "--shard", "1/2"]) == 0  # resumes: only v3 is extracted again
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    assert {k for k in after if after[k] != before.get(k)} == {"v3__0.npy"}
    assert _listed(tmp_path) == [f"v{i}__0.npy" for i in range(5)]
    assert main([*args, "--shard", "0/2", "--encode-every", "4"]) == 2  # other settings into the same folder
