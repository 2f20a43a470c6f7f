from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.data.dataset import FeatureDataset
from train.data.layouts import load_layout
from train.data.release import (
    chunk,
    infer_dataset,
    load_features,
    load_ground_truth,
    pool_or_pad,
    read_split,
    split_crop,
    unchunk,
)

RNG = np.random.default_rng(0)
UCF_AUTHOR_ROOT = "/home/xbgydx/Desktop/UCFClipFeatures"  # as written in VadCLIP's ucf_CLIP_rgb.csv


def public_ucf_train() -> list[tuple[str, str]]:
    """(video, label) of the real UCF-Crime training list, in its order (train/data/public)."""
    arrays = load_layout("ucf")
    return list(zip(arrays["train_names"].tolist(), arrays["train_labels"].tolist()))


def _feats(t: int, value: float | None = None) -> np.ndarray:
    if value is not None:
        return np.full((t, 512), value, np.float32)
    return RNG.standard_normal((t, 512)).astype(np.float32)


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return path


# ------------------------------------------------------------ release format


def test_public_ucf_list_loads_via_feature_root(tmp_path: Path) -> None:
    """The first 20 rows of the real UCF list (authors' absolute paths) resolve under a feature root."""
    lines = ["path,label"] + [f"{UCF_AUTHOR_ROOT}/Abuse/{name}__{k}.npy,{label}"
                              for name, label in public_ucf_train()[:2] for k in range(10)]
    root = tmp_path / "UCFClipFeatures"
    for line in lines[1:]:
        raw = Path(line.split(",")[0])
        (root / raw.parent.name).mkdir(parents=True, exist_ok=True)
        np.save(root / raw.parent.name / raw.name, _feats(7 + int(raw.stem[-1])))
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(lines) + "\n")

    split = read_split(csv, feature_root=root)
    assert split.label_map.dataset == "ucf"
    assert split.names == ["Abuse001_x264", "Abuse002_x264"]
    video = split.videos[0]
    assert len(video.crops) == 10 and video.primary == 1 and video.label == "Abuse"
    assert [split_crop(str(p))[1] for p in video.crops] == list(range(10))
    assert video.load(3).shape == (10, 512)


def test_xd_flat_layout_multilabel_and_crop_order(tmp_path: Path) -> None:
    root = tmp_path / "XDTrainClipFeatures"
    root.mkdir()
    rows = []
    for name, label in (("v=a__#1_label_G-B2-B6", "G-B2-B6"), ("movie__#00-01_label_A", "A")):
        for k in (4, 3, 2, 1, 0):  # listed out of order: kept in crop order
            np.save(root / f"{name}__{k}.npy", _feats(5, float(k)))
            rows.append((f"/home/someone/XDTrainClipFeatures/{name}__{k}.npy", label))
    split = read_split(_write_csv(tmp_path / "list.csv", rows), feature_root=root)
    assert split.label_map.dataset == "xd"
    first = split.videos[0]
    assert first.primary == split.label_map.codes.index("G")
    assert first.multi_hot.tolist() == [0, 0, 1, 0, 0, 1, 1]
    assert [float(first.load(k)[0, 0]) for k in range(5)] == [0, 1, 2, 3, 4]
    assert split.videos[1].primary == 0


def test_relative_paths_resolve_against_the_csv_folder(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "Normal_Videos_001__0.npy", _feats(4))
    split = read_split(_write_csv(tmp_path / "test.csv", [("features/Normal_Videos_001__0.npy", "Normal")]))
    assert split.videos[0].crops[0] == tmp_path / "features" / "Normal_Videos_001__0.npy"


def test_infer_dataset() -> None:
    assert infer_dataset(["Normal", "Abuse"]) == "ucf"
    assert infer_dataset(["A", "B2-0-0", "G-B2-B6"]) == "xd"
    with pytest.raises(ValueError, match="match no known dataset"):
        infer_dataset(["Normal", "B2-0-0"])


# ------------------------------------------------------------ lengths


def test_pool_uniform_bins_by_hand() -> None:
    x = np.arange(5, dtype=np.float32)[:, None]  # bins [0,2) and [2,5)
    pooled, mask = pool_or_pad(x, 2)
    assert pooled[:, 0].tolist() == [0.5, 3.0] and mask.all()


def test_pad_with_mask() -> None:
    padded, mask = pool_or_pad(np.ones((3, 2), np.float32), 5)
    assert padded.sum() == 6 and padded[3:].sum() == 0
    assert mask.tolist() == [True, True, True, False, False]
    same, mask = pool_or_pad(np.ones((5, 2), np.float32), 5)
    assert same.shape == (5, 2) and mask.all()


def test_pseudo_targets_line_up_with_pooled_features(tmp_path: Path) -> None:
    """A target equal to the snippet index pools exactly like features whose value is the snippet index."""
    rows = []
    for name, t in (("long", 1000), ("short", 40)):
        feats = np.repeat(np.arange(t, dtype=np.float32)[:, None], 512, 1)
        np.save(tmp_path / f"{name}__0.npy", feats)
        rows.append((f"{name}__0.npy", "Abuse" if name == "long" else "Normal"))
    split = read_split(_write_csv(tmp_path / "train.csv", rows))
    targets = [np.arange(1000, dtype=np.float32), np.arange(40, dtype=np.float32)]
    ds = FeatureDataset(split, length=256, targets=targets, seed=0)
    for i in range(2):
        item = ds[i]
        assert item["features"].shape == (256, 512) and item["mask"].dtype.is_floating_point is False
        np.testing.assert_allclose(item["target"].numpy(), item["features"][:, 0].numpy())
        assert item["index"] == i
    assert int(ds[1]["mask"].sum()) == 40 and bool(ds[0]["mask"].all())
    with pytest.raises(ValueError, match="target of video long has 999 snippets"):
        FeatureDataset(split, targets=[np.zeros(999), targets[1]])[0]


def test_crop_choice_is_seeded_per_epoch(tmp_path: Path) -> None:
    rows = [(f"v{i}__{k}.npy", "Normal") for i in range(20) for k in range(10)]
    for p, _ in rows:
        np.save(tmp_path / p, _feats(2))
    split = read_split(_write_csv(tmp_path / "train.csv", rows))
    a, b = FeatureDataset(split, seed=1), FeatureDataset(split, seed=1)
    crops = [a.crop_of(i) for i in range(20)]
    assert crops == [b.crop_of(i) for i in range(20)]
    a.set_epoch(1)
    assert crops != [a.crop_of(i) for i in range(20)]
    assert FeatureDataset(split, random_crop=False).crop_of(5) == 0


def test_chunk_round_trip() -> None:
    x = RNG.standard_normal((600, 3)).astype(np.float32)
    chunks, mask = chunk(x, 256)
    assert chunks.shape == (3, 256, 3) and mask.shape == (3, 256)
    assert int(mask.sum()) == 600 and not mask[2, 600 - 512:].any()
    np.testing.assert_array_equal(unchunk(chunks, 600), x)
    one, mask = chunk(x[:10], 256)
    assert one.shape == (1, 256, 3) and int(mask.sum()) == 10


# ------------------------------------------------------------ bad files


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 256), np.float32), r"shape \[4, 256\], expected \[T, 512\]"),
        (np.zeros(512, np.float32), r"shape \[512\], expected \[T, 512\]"),
        (np.zeros((0, 512), np.float32), "empty feature file"),
        (np.where(np.arange(512) == 7, np.nan, 0).astype(np.float32)[None].repeat(3, 0), "NaN/Inf"),
        (np.zeros((3, 512), np.int64), "expected a float type"),
    ],
)
def test_bad_feature_file_names_the_path(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad__0.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message) as err:
        load_features(path)
    assert str(path) in str(err.value)


def test_not_an_npy_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "text__0.npy"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npy") as err:
        load_features(path)
    assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="gone__0.npy"):
        read_split(_write_csv(tmp_path / "l.csv", [("/nowhere/gone__0.npy", "Normal")]))


def test_unknown_label_and_crop_mismatch(tmp_path: Path) -> None:
    for p in ("a__0.npy", "a__1.npy", "b__0.npy"):
        np.save(tmp_path / p, _feats(2))
    bad_label = _write_csv(tmp_path / "l1.csv", [("a__0.npy", "Normal"), ("b__0.npy", "Kidnap")])
    with pytest.raises(ValueError, match=r"'Kidnap' in .*l1.csv line 3"):
        read_split(bad_label, dataset="ucf")
    rows = [("a__0.npy", "Normal"), ("a__1.npy", "Normal"), ("b__0.npy", "Abuse")]
    mismatch = _write_csv(tmp_path / "l2.csv", rows)
    with pytest.raises(ValueError, match=r"l2.csv: video b has 1 crops, expected 2"):
        read_split(mismatch)


# ------------------------------------------------------------ ground truth


def _gt_dir(tmp_path: Path, frames_extra: int = 0) -> Path:
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features/Abuse028_x264__5.npy", _feats(5))
    np.save(tmp_path / "features/Normal_Videos_001_x264__5.npy", _feats(3))
    _write_csv(tmp_path / "test.csv", [("features/Abuse028_x264__5.npy", "Abuse"),
                                       ("features/Normal_Videos_001_x264__5.npy", "Normal")])
    frames = np.zeros(16 * 8 + frames_extra, np.float32)
    frames[20:40] = 1
    np.save(tmp_path / "gt_frames.npy", frames)
    segments = np.empty(2, object)
    segments[:] = [[["20", "40"]], [[0, 48]]]  # UCF stores the numbers of anomalies as strings
    labels = np.empty(2, object)
    labels[:] = [["Abuse"], ["A"]]
    np.save(tmp_path / "gt_segment.npy", segments, allow_pickle=True)
    np.save(tmp_path / "gt_label.npy", labels, allow_pickle=True)
    return tmp_path


def test_load_ground_truth(tmp_path: Path) -> None:
    gt = load_ground_truth(_gt_dir(tmp_path))
    assert gt.names == ["Abuse028_x264", "Normal_Videos_001_x264"]
    assert gt.num_snippets == [5, 3] and gt.gt_frames.dtype == np.float32
    assert gt.segments[0].tolist() == [[20.0, 40.0]] and gt.segments[1].tolist() == [[0.0, 48.0]]
    assert gt.seg_labels == [["Abuse"], ["A"]] and gt.label_map.dataset == "ucf"
    assert gt.frames_of(0).sum() == 20 and gt.frames_of(1).shape == (48,)


def test_ground_truth_length_mismatch_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"gt_frames.npy: 129 frame labels, expected 16 x 8 snippets = 128"):
        load_ground_truth(_gt_dir(tmp_path, frames_extra=1))
