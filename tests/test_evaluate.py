"""The evaluate CLI on a tiny dataset folder in the release layout (test.csv, features, gt_*.npy)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from train.data.release import save_ground_truth
from train.evaluation.evaluate import load_scores, main
from train.data.labels import UCF

# name, label, snippet truth, segments (UCF's files store the numbers as strings), segment labels
VIDEOS = [
    ("Abuse001_x264", "Abuse", [0, 1, 1, 0], [["16", "48"]], ["Abuse"]),
    ("Arson001_x264", "Arson", [0, 0, 1, 1, 0], [["32", "64"]], ["Arson"]),
    ("Normal_Videos_001_x264", "Normal", [0, 0, 0, 0], [[0, 64]], ["A"]),
]


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "features").mkdir(parents=True)
    rows = ["path,label"]
    for name, label, truth, _, _ in VIDEOS:
        np.save(data / "features" / f"{name}__0.npy", np.zeros((len(truth), 512), np.float32))
        rows.append(f"features/{name}__0.npy,{label}")
    (data / "test.csv").write_text("\n".join(rows) + "\n")
    save_ground_truth(data, np.concatenate([np.repeat(v[2], 16) for v in VIDEOS]), [v[3] for v in VIDEOS],
                      [v[4] for v in VIDEOS])
    return data


def oracle_scores(path: Path, skip: str = "") -> Path:
    """Binary = the snippet truth; each anomalous video peaks in its own class on its segment, every other
    anomaly class is flat (no segment)."""
    arrays = {}
    for name, label, truth, _, _ in VIDEOS:
        if name == skip:
            continue
        probs = np.full((len(truth), UCF.num_classes), 0.01, np.float32)
        if label != "Normal":
            probs[:, UCF.codes.index(label)] = np.where(np.array(truth) > 0, 0.9, 0.1)
        probs[:, 0] = 1 - probs[:, 1:].sum(axis=1)
        arrays[f"binary/{name}"] = np.array(truth, np.float32)
        arrays[f"classes/{name}"] = probs
    np.savez(path, **arrays)
    return path


def test_cli_writes_metrics(dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run" / "metrics.json"
    with caplog.at_level(logging.INFO):
        scores = oracle_scores(tmp_path / "s.npz")
        code = main(["--scores", str(scores), "--data", str(dataset), "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"auc", "ap", "map", "map_corrected"}
    assert metrics["auc"] == pytest.approx(1.0) and metrics["ap"] == pytest.approx(1.0)
    # Abuse and Arson found exactly; the other anomaly classes have no truth and the UCF normal class never
    # matches the normal videos' 'A' segments: 2 of 14 classes (reference) / 2 of 13 (corrected) at 100
    assert metrics["map"] == pytest.approx({k: 200 / 14 for k in ("0.1", "0.2", "0.3", "0.4", "0.5", "avg")})
    assert metrics["map_corrected"]["avg"] == pytest.approx(200 / 13)
    assert "AUC 100.00" in caplog.text and "anomaly only" in caplog.text


def test_cli_names_a_missing_video(dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scores = oracle_scores(tmp_path / "s.npz", skip="Arson001_x264")
    out = tmp_path / "metrics.json"
    assert main(["--scores", str(scores), "--data", str(dataset), "--out", str(out)]) == 2
    assert "Arson001_x264" in caplog.text and not out.exists()


def test_scores_file_keys_are_checked(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", **{"scores/v0": np.zeros(3)})
    with pytest.raises(ValueError, match="unexpected key 'scores/v0'"):
        load_scores(tmp_path / "bad.npz")
    np.savez(tmp_path / "binary_only.npz", **{"binary/v0": np.zeros(3)})
    binary, classes = load_scores(tmp_path / "binary_only.npz")
    assert list(binary) == ["v0"] and classes is None
