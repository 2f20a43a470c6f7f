"""The public VadCLIP feature release loads as published: miniatures of the UCF-Crime and XD-Violence releases
(VadCLIP's file names, the authors' absolute paths, the archives' folder structure) train the teacher and the MIL
baseline, evaluate and feed the calibration with no renaming; a folder or ground truth that does not match fails
with one line that names the file and the fix."""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from train.data.release import (GroundTruth, check_dataset, load_ground_truth, load_split, locate, read_split,
                                resolve_path)

AUTHOR = "/home/xbgydx/Desktop"  # the prefix of every path in the published lists


@dataclass(frozen=True)
class Release:
    lists: Path  # VadCLIP's list folder: the CSVs and the ground truth under their own names
    features: Path  # where the feature archives were unpacked (data.feature_root)
    dataset: str


def _object_array(items: list) -> np.ndarray:
    array = np.empty(len(items), object)
    array[:] = items
    return array


def _features(rng: np.random.Generator, n: int, segment: tuple[int, int] | None, direction: np.ndarray
              ) -> np.ndarray:
    x = rng.normal(0.0, 0.3, (n, 512)).astype(np.float32)
    if segment is not None:
        x[segment[0]:segment[1]] += 1.5 * direction
    return x


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))


def build_release(root: Path, dataset: str, seed: int = 0) -> Release:
    """A miniature of the published release: 8 training videos x 10 crops, 6 test videos (one crop each, the crop
    the real test list names: UCF ``__5``, XD ``__0``), random features with a planted anomaly, consistent truth."""
    rng = np.random.default_rng(seed)
    lists, features = root / "list", root / "unpacked"
    lists.mkdir(parents=True)
    if dataset == "ucf":
        train_labels = ["Abuse", "Arrest", "Normal", "Abuse", "Normal", "Arrest", "Normal", "Normal"]
        test_labels = ["Abuse", "Arrest", "Abuse", "Normal", "Normal", "Normal"]
        names = {"train": "ucf_CLIP_rgb.csv", "test": "ucf_CLIP_rgbtest.csv", "frames": "gt_ucf.npy",
                 "segment": "gt_segment_ucf.npy", "label": "gt_label_ucf.npy"}
        test_crop = 5
        codes = {"Abuse": ["Abuse"], "Arrest": ["Arrest"]}

        def rel_path(split: str, i: int, label: str) -> str:  # UCFClipFeatures/<class dir>/<video>__<k>.npy
            if label == "Normal":
                folder = "Training_Normal_Videos_Anomaly" if split == "train" else "Testing_Normal_Videos_Anomaly"
                video = f"Normal_Videos{i:03d}_x264" if split == "train" else f"Normal_Videos_{900 + i}_x264"
            else:
                folder, video = label, f"{label}{(i if split == 'train' else 40 + i):03d}_x264"
            return f"UCFClipFeatures/{folder}/{video}"
    else:
        train_labels = ["B2-0-0", "A", "G-B2-B6", "A", "B1-0-0", "A", "B2-G-0", "A"]
        test_labels = ["B2-G-0", "B1-0-0", "G-0-0", "A", "A", "A"]
        names = {"train": "xd_CLIP_rgb.csv", "test": "xd_CLIP_rgbtest.csv", "frames": "gt.npy",
                 "segment": "gt_segment.npy", "label": "gt_label.npy"}
        test_crop = 0
        codes = {"B2-G-0": ["B2", "G"], "B1-0-0": ["B1"], "G-0-0": ["G"]}

        def rel_path(split: str, i: int, label: str) -> str:  # flat: XD{Train,Test}ClipFeatures/<video>__<k>.npy
            folder = "XDTrainClipFeatures" if split == "train" else "XDTestClipFeatures"
            return f"{folder}/Bad.Boys.1995__#00-{10 + i:02d}-51_00-{11 + i:02d}-53_label_{label}"

    directions = {label: rng.normal(size=512) / 16 for label in set(train_labels + test_labels)}
    rows = []
    for i, label in enumerate(train_labels):
        n = int(rng.integers(20, 60))
        start = int(rng.integers(0, n - 10))
        normal = label in ("Normal", "A")
        for crop in range(10):
            rel = f"{rel_path('train', i, label)}__{crop}.npy"
            (features / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(features / rel, _features(rng, n, None if normal else (start, start + 10), directions[label]))
            rows.append((f"{AUTHOR}/{rel}", label))
    _write_csv(lists / names["train"], rows)

    rows, frames, segments, seg_labels = [], [], [], []
    for i, label in enumerate(test_labels):
        n = int(rng.integers(20, 50))
        start = int(rng.integers(0, n - 12))
        normal = label in ("Normal", "A")
        rel = f"{rel_path('test', i, label)}__{test_crop}.npy"
        (features / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(features / rel, _features(rng, n, None if normal else (start, start + 12), directions[label]))
        rows.append((f"{AUTHOR}/{rel}", label))
        gt = np.zeros(16 * n)
        if normal:  # as published: [[0, frames]] with the numbers as ints, label 'A'
            segments.append([[0, 16 * n]])
            seg_labels.append(["A"])
        else:  # as published: anomalous segments as strings, one entry per code
            gt[16 * start:16 * (start + 12)] = 1
            segments.append([[str(16 * start), str(16 * (start + 12))]] * len(codes[label]))
            seg_labels.append(codes[label])
        frames.append(gt)
    _write_csv(lists / names["test"], rows)
    np.save(lists / names["frames"], np.concatenate(frames))
    np.save(lists / names["segment"], _object_array(segments), allow_pickle=True)
    np.save(lists / names["label"], _object_array(seg_labels), allow_pickle=True)
    return Release(lists, features, dataset)


@pytest.fixture(scope="module", params=["ucf", "xd"])
def release(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Release:
    return build_release(tmp_path_factory.mktemp(f"vadclip_{request.param}"), request.param)


# ------------------------------------------------------------ layout and ground truth


def test_layout_detected_and_truth_consistent(release: Release) -> None:
    files = locate(release.lists, need=("train", "test", "gt"))
    assert files.dataset == release.dataset and files.layout.name.startswith("VadCLIP")
    train = load_split(release.lists, "train", feature_root=release.features)
    assert len(train) == 8 and all(len(v.crops) == 10 for v in train.videos)
    assert train.label_map.dataset == release.dataset
    truth = load_ground_truth(release.lists, feature_root=release.features)
    assert len(truth.names) == 6 and truth.gt_frames.shape[0] == 16 * sum(truth.num_snippets)
    assert sum(truth.frames_of(i).any() for i in range(6)) == 3  # the anomalous test videos, in list order
    assert "8 training videos x 10 crops, 6 test videos" in check_dataset(release.lists, None, release.features)


def test_authors_paths_resolve_under_either_root(release: Release) -> None:
    """feature_root may be the folder the archives were unpacked into or (UCF) the archive's folder itself."""
    raw = read_split(locate(release.lists).test, feature_root=release.features).videos[0].crops[0]
    listed = next(line.split(",")[0] for line in locate(release.lists).test.read_text().splitlines()[1:])
    assert listed.startswith(AUTHOR) and raw.is_file() and raw.is_relative_to(release.features)
    inner = release.features / Path(listed).relative_to(AUTHOR).parts[0]
    if release.dataset == "ucf":
        assert resolve_path(listed, release.lists, inner) == raw
    with pytest.raises(FileNotFoundError, match="is feature_root .* the folder the feature archives were unpacked"):
        resolve_path(listed, release.lists, release.lists)


def test_test_list_repeating_crops_keeps_one_per_video(release: Release, tmp_path: Path) -> None:
    """A test list that names several crops of a video: the ground truth still counts one crop per video."""
    files = locate(release.lists)
    shutil.copytree(release.lists, tmp_path / "list")
    lines = files.test.read_text().splitlines()
    repeated = [lines[0]]
    for line in lines[1:]:
        path, label = line.rsplit(",", 1)
        twin = path.rsplit("__", 1)[0] + "__7.npy"
        np.save(resolve_path(path, files.dir, release.features).with_name(Path(twin).name),
                np.load(resolve_path(path, files.dir, release.features)))
        repeated += [line, f"{twin},{label}"]
    (tmp_path / "list" / files.test.name).write_text("\n".join(repeated) + "\n")
    truth = load_ground_truth(tmp_path / "list", feature_root=release.features)
    assert truth.names == load_ground_truth(release.lists, feature_root=release.features).names


def test_mismatched_gt_length_names_file_and_fix(release: Release, tmp_path: Path) -> None:
    files = locate(release.lists)
    bad = shutil.copytree(release.lists, tmp_path / "list")
    frames = np.load(files.path("gt_frames"))
    np.save(bad / files.path("gt_frames").name, frames[:-16])  # one snippet short
    with pytest.raises(ValueError) as err:
        load_ground_truth(bad, feature_root=release.features)
    message = str(err.value)
    assert f"{files.path('gt_frames').name}: {len(frames) - 16} frame labels, expected 16 x " in message
    assert "check data.feature_root" in message and "\n" not in message
    np.save(bad / files.path("gt_frames").name, np.repeat(frames[::16], 8))  # 8-frame snippets
    with pytest.raises(ValueError, match="about 8.0 frames per snippet: the features were extracted with another "
                                         "snippet length"):
        load_ground_truth(bad, feature_root=release.features)
    segments = np.load(files.path("gt_segment"), allow_pickle=True)
    np.save(bad / files.path("gt_frames").name, frames)
    np.save(bad / files.path("gt_segment").name, segments[:-1], allow_pickle=True)
    with pytest.raises(ValueError, match=r"5 entries, expected one per test video \(6 videos in .*test\.csv\)"):
        load_ground_truth(bad, feature_root=release.features)


def test_missing_file_lists_the_folder(release: Release, tmp_path: Path) -> None:
    files = locate(release.lists)
    bad = shutil.copytree(release.lists, tmp_path / "list")
    (bad / files.path("gt_label").name).unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_ground_truth(bad, feature_root=release.features)
    message = str(err.value)
    assert f"{bad / files.path('gt_label').name} not found" in message
    held = message.split(" holds ", 1)[1]
    assert all(files.path(role).name in held for role in ("train", "test", "gt_frames", "gt_segment"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no dataset lists found, expected train.csv \\+ test.csv .*"
                                                "ucf_CLIP_rgb.csv .*xd_CLIP_rgb.csv.*the folder is empty"):
        locate(empty)


def test_folder_holding_both_releases_needs_the_dataset(tmp_path: Path) -> None:
    """VadCLIP's own list/ folder holds both releases; data.dataset picks one."""
    ucf, xd = build_release(tmp_path / "u", "ucf"), build_release(tmp_path / "x", "xd")
    both = shutil.copytree(ucf.lists, tmp_path / "list")
    shutil.copytree(xd.lists, both, dirs_exist_ok=True)
    with pytest.raises(ValueError, match="holds the lists of several layouts.*name the dataset, ucf or xd"):
        locate(both)
    assert locate(both, "xd").path("gt_frames").name == "gt.npy"
    assert len(load_ground_truth(both, feature_root=ucf.features, dataset="ucf").names) == 6
    with pytest.raises(ValueError, match="holds the VadCLIP UCF-Crime lists, but the dataset is set to 'xd'"):
        locate(ucf.lists, "xd")


# ------------------------------------------------------------ train, evaluate, calibrate on it as published


def test_mil_baseline_and_evaluate(release: Release, tmp_path: Path) -> None:
    from train.evaluation.evaluate import main as evaluate
    from train.training.baseline import MILConfig, run as baseline

    run = tmp_path / "mil"
    metrics = baseline(release.lists, run, MILConfig(epochs=1, batch_size=4, length=32, threads=1,
                                                     feature_root=str(release.features)))
    assert 0.0 <= metrics["auc"] <= 1.0 and metrics["map"]["avg"] >= 0.0
    assert evaluate(["--scores", str(run / "scores.npz"), "--data", str(release.lists), "--out",
                     str(tmp_path / "metrics.json"), "--feature-root", str(release.features)]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["auc"] == pytest.approx(metrics["auc"])


def test_baseline_cli_without_feature_root_exits_2_before_training(release: Release, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from train.training.baseline import main as baseline

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as err:
        baseline(["--data", str(release.lists), "--out", str(tmp_path / "mil")])
    assert err.value.code == 2 and not (tmp_path / "mil").exists()
    assert f"not found; tried {AUTHOR}/" in caplog.text and "pass feature_root" in caplog.text


def test_teacher_one_epoch(release: Release, tmp_path: Path) -> None:
    from train.training.teacher import TrainConfig, run

    metrics = run(TrainConfig.model_validate({
        "data": {"dir": str(release.lists), "feature_root": str(release.features), "length": 32},
        "model": {"d_model": 16, "num_heads": 2, "num_levels": 3, "window": 4, "num_stem_blocks": 1,
                  "num_ctx": 2, "text_source": "tiny", "drop_path": 0.0},
        "optim": {"lr": 3e-3, "batch_size": 4, "epochs_stage1": 1, "epochs_stage2": 1, "lr_step": 0},
        "out": str(tmp_path / "teacher"), "device": "cpu", "threads": 1, "plot_videos": 0}))
    assert 0.0 <= metrics["auc"] <= 1.0 and set(metrics["map"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "avg"}
    scores = np.load(tmp_path / "teacher/scores.npz")
    truth: GroundTruth = load_ground_truth(release.lists, feature_root=release.features)
    assert [scores[f"binary/{name}"].shape[0] for name in truth.names] == truth.num_snippets


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    from tests.test_pipeline import tiny_bundle_path

    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


def test_calibration_data_path(release: Release, tiny_bundle: Path, tmp_path: Path) -> None:
    """The calibration reads the release as published: head windows from the training list, the gate's labelled
    videos from the test list and its ground truth (not a generated benchmark)."""
    from calibration.calibrate import head_detection, labelled_benchmark
    from calibration.dataset import feature_sequences
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.bundle import MANIFEST, load_bundle

    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "b")
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest | {"dataset": release.dataset}))  # the release's
    bundle = load_bundle(bundle_dir)

    sequences = feature_sequences(release.lists, split="train", feature_root=release.features)
    assert len(sequences) == 8 and all(s.shape[1] == 512 for s in sequences)
    bench = labelled_benchmark(release.lists, bundle, tmp_path / "work")
    assert bench == release.lists and not (tmp_path / "work").exists()
    head = OnnxRuntimeBackend(bundle.file("head"), threads=1)
    detection = head_detection(head, {}, bench, bundle, videos=6, max_snippets=32, feature_root=release.features)
    assert 0.0 <= detection["float"]["auc"] <= 1.0 and 0.0 <= detection["float"]["ap"] <= 1.0
