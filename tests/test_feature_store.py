"""In-memory features (train.data.release.preload): the same items as reading one file per access."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from train.data.dataset import FeatureDataset
from train.data.release import FeatureStore, preload, read_split


def write_split(folder: Path, crops: int = 3) -> Path:
    """Six videos (UCF labels), ``crops`` crop files each, lengths 5..300 (pooled and padded), float16 and float32."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (label, length) in enumerate([("Normal", 5), ("Abuse", 40), ("Arson", 300), ("Normal", 257),
                                         ("Fighting", 1), ("Explosion", 90)]):
        for k in range(crops):
            path = folder / f"v{i}__{k}.npy"
            np.save(path, rng.standard_normal((length, 512)).astype(np.float16 if i % 2 else np.float32))
            rows.append(f"{path.name},{label}")
    (folder / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return folder / "train.csv"


def test_items_are_the_same_in_memory(tmp_path: Path) -> None:
    split = read_split(write_split(tmp_path))
    held = preload(split, budget_mb=100)
    assert all(v.store is not None for v in held.videos) and all(v.store is None for v in split.videos)
    assert held.videos[0].store.nbytes == sum(np.load(p).nbytes for v in split.videos for p in v.crops)
    targets = [np.arange(len(v.load(0)), dtype=np.float32) for v in split.videos]
    on_disk = FeatureDataset(split, length=64, targets=targets, seed=3)
    in_memory = FeatureDataset(held, length=64, targets=targets, seed=3)
    for epoch in range(3):
        on_disk.set_epoch(epoch)
        in_memory.set_epoch(epoch)
        for i in range(len(split)):
            a, b = on_disk[i], in_memory[i]
            assert a.keys() == b.keys()
            for key in a:
                if isinstance(a[key], torch.Tensor):
                    assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
                else:
                    assert a[key] == b[key], key
    for disk, memory in zip(split.videos, held.videos):
        for k in range(len(disk.crops)):
            x, y = disk.load(k), memory.load(k)
            assert y.dtype == np.float32 and np.array_equal(x, y)
            y += 1  # a copy: the store is unchanged
            assert np.array_equal(memory.load(k), x)


def test_over_budget_or_off_reads_files(tmp_path: Path) -> None:
    split = read_split(write_split(tmp_path))
    assert preload(split, budget_mb=0.01) is split
    assert preload(split, budget_mb=0) is split


def test_bad_file_is_named(tmp_path: Path) -> None:
    csv = write_split(tmp_path, crops=1)
    np.save(tmp_path / "v2__0.npy", np.full((4, 512), np.nan, np.float32))
    with pytest.raises(ValueError, match="v2__0.npy: .*NaN"):
        FeatureStore([tmp_path / "v1__0.npy", tmp_path / "v2__0.npy"])
    np.save(tmp_path / "v2__0.npy", np.zeros((4, 512), np.float32))
    np.save(tmp_path / "v3__0.npy", np.zeros((4, 300), np.float32))
    with pytest.raises(ValueError, match=r"v3__0.npy: features have shape \[4, 300\]"):
        preload(read_split(csv), budget_mb=100)
