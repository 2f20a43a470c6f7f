"""The teacher's training loop: held-out selection, pseudo-label quality, and a whole two-stage run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from train.data.release import Split, Video
from train.data.labels import UCF
from train.training.teacher import holdout, pseudo_quality


def _split(per_class: dict[int, int]) -> Split:
    videos = []
    for label, count in per_class.items():
        for i in range(count):
            hot = np.zeros(UCF.num_classes, np.float32)
            hot[label] = 1
            videos.append(Video(f"{UCF.codes[label]}{i:03d}", UCF.codes[label], label, hot, (Path("x.npy"),)))
    return Split(videos, UCF, Path("train.csv"))


def test_holdout_is_stratified_disjoint_and_seeded() -> None:
    split = _split({0: 20, 1: 10, 3: 1})
    train, val = holdout(split, 0.1, seed=0)
    assert len(train) + len(val) == len(split)
    assert not set(train.names) & set(val.names)
    assert sorted(v.primary for v in val.videos) == [0, 0, 1]  # 10% of each class, a single video stays in train
    assert holdout(split, 0.1, seed=0)[1].names == val.names and holdout(split, 0.1, seed=1)[1].names != val.names
    assert len(holdout(split, 0.0, seed=0)[1]) == 0


def test_pseudo_quality_by_hand(tmp_path: Path) -> None:
    truth = tmp_path / "train_truth.npz"
    np.savez(truth, **{"binary/a": np.array([0, 1, 1, 1, 0], np.float32),
                       "binary/n": np.zeros(3, np.float32)})
    labels = {"a": np.array([[0, 0], [1, 1], [1, 0], [0, 0], [1, 0]], np.float32),  # b: tp 2, fp 1, fn 1
              "n": np.zeros((3, 2), np.float32)}  # normal videos are skipped
    q = pseudo_quality(labels, truth)
    assert q["b"]["precision"] == 2 / 3 and q["b"]["recall"] == 2 / 3
    assert q["c"]["precision"] == 1.0 and q["c"]["recall"] == 1 / 3


def test_two_stage_run_writes_its_folder(tmp_path: Path) -> None:
    from tests.test_distill import build_student_run

    teacher, _ = build_student_run(tmp_path)
    for name in ("config.yaml", "stage1.pt", "teacher.pt", "pseudo_labels.npz", "scores.npz", "metrics.json",
                 "text_embeddings.npz"):
        assert (teacher / name).is_file(), name
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert {"auc", "ap", "map", "map_corrected", "binary_branch", "class_branch"} <= set(metrics)
    assert 0.0 <= metrics["auc"] <= 1.0 and set(metrics["map"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "avg"}


def test_fusion_picks_the_finest_level_or_the_mean() -> None:
    import torch

    from train.models.cplvad import fuse_levels

    logits = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [5.0, 4.0]]])  # (B=1, L=3, T=2)
    assert fuse_levels(logits, "finest").tolist() == [[1.0, -2.0]]
    assert torch.allclose(fuse_levels(logits, "mean"), torch.tensor([[3.0, 2 / 3]]))
