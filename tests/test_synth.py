from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from train.data.dataset import FeatureDataset
from train.data.release import load_ground_truth, read_split
from train.data.synth import (
    Generator,
    Knobs,
    class_directions,
    coverage,
    generate,
    parse_knobs,
    ramp,
    read_layout,
    stratified_subset,
)

SCALE = 0.01  # ~20 UCF / ~40 XD training videos; the test split is always the full real one


@pytest.fixture(scope="module")
def ucf(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    out = tmp_path_factory.mktemp("ucf")
    generate("ucf", out, seed=3, scale=SCALE, data_dir=shared_data)
    return out


def _gt_file(shared_data: Path, layout: str, name: str) -> Path:
    return shared_data / "gt" / layout / (f"{name}__9_gt.npy" if layout == "ucf" else f"{name}__0.npy")


# ------------------------------------------------------------ pure pieces


def test_ramp_by_hand() -> None:
    # event [2, 12): width max(1, 0.25 * 10) = 2.5; centres 2.5, 3.5 -> (0.5 + 0.5) / 2.5, (1.5 + 0.5) / 2.5
    r = ramp(14, 2.0, 12.0, 0.25)
    np.testing.assert_allclose(r[:6], [0, 0, 0.4, 0.8, 1, 1])
    np.testing.assert_allclose(r[-4:], [0.8, 0.4, 0, 0])
    assert ramp(5, 2.2, 2.6, 0.25)[2] > 0  # shorter than a snippet, still visible


def test_coverage_by_hand() -> None:
    np.testing.assert_allclose(coverage(4, np.array([[0.5, 2.0], [1.5, 2.25]])), [0.5, 1.0, 0.25, 0.0])
    assert coverage(3, np.zeros((0, 2))).sum() == 0


def test_class_directions(shared_data: Path) -> None:
    text = np.load(shared_data / "text_embeddings/ucf-prompt.npy").astype(np.float64)
    g, d = class_directions(text, generic_weight=0.6, tau=0.01)
    assert np.allclose(np.linalg.norm(d[1:], axis=1), 1) and not d[0].any()
    np.testing.assert_allclose(d[1:] @ g, 0.6, atol=1e-9)  # every class shares the generic direction
    pairs = np.triu_indices(13, 1)
    cos = (d[1:] @ d[1:].T)[pairs]
    assert cos.min() > 0 and cos.max() < 0.9  # alike through g, still distinguishable
    text_cos = (text[1:] @ text[1:].T / np.outer(*[np.linalg.norm(text[1:], axis=1)] * 2))[pairs]
    assert spearmanr(text_cos, cos)[0] > 0.5  # confusions follow the names' similarity


def test_stratified_subset_keeps_every_label() -> None:
    labels = ["Normal"] * 100 + ["Abuse"] * 10 + ["Arson"] * 3
    keep = stratified_subset(labels, 0.1, np.random.default_rng(0))
    kept = [labels[i] for i in keep]
    assert kept.count("Normal") == 10 and kept.count("Abuse") == 1 and kept.count("Arson") == 1
    assert keep == sorted(keep)


def test_generator_is_a_function_of_its_stream(shared_data: Path) -> None:
    real = read_layout("ucf", shared_data)
    text = np.load(shared_data / "text_embeddings/ucf-prompt.npy")
    gen = Generator(text, seed=0, knobs=Knobs(), event_lengths=real.event_lengths)
    video = lambda s: gen.video(np.random.default_rng(s), 50, [], [0], [0, 1])  # noqa: E731
    a, b, c = video(1), video(1), video(2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0]) and not np.allclose(a[0], a[1])
    norms = np.linalg.norm(a[0], axis=1)
    assert 7 < norms.mean() < 14  # like CLIP ViT-B/16 image embeddings
    assert np.corrcoef(a[0].ravel(), a[1].ravel())[0, 1] > 0.9  # two crops of one video are close


# ------------------------------------------------------------ generated set


def test_ucf_test_split_is_the_real_layout(ucf: Path, shared_data: Path) -> None:
    gt = load_ground_truth(ucf)
    lines = (shared_data / "annotations/ucf/ucf_CLIP_rgbtest.csv").read_text().splitlines()[1:]
    real_names = [line.split(",")[0].rsplit("/", 1)[1].rsplit("__", 1)[0] for line in lines]
    assert gt.names == real_names and len(gt.names) == 290
    real_frames = [np.load(_gt_file(shared_data, "ucf", n)) for n in gt.names]
    assert gt.num_snippets == [len(f) // 16 for f in real_frames]
    np.testing.assert_array_equal(gt.gt_frames, np.concatenate(real_frames))
    real_segments = np.load(shared_data / "annotations/ucf/gt_segment_ucf.npy", allow_pickle=True)
    assert [s.tolist() for s in gt.segments] == [np.asarray(s, float).tolist() for s in real_segments]
    assert read_split(ucf / "test.csv").videos[0].crops[0].name == "Abuse028_x264__5.npy"


def test_anomalies_sit_on_the_real_segments(ucf: Path, shared_data: Path) -> None:
    """Anomalous snippets move along their class direction, normal ones do not."""
    gt = load_ground_truth(ucf)
    knobs = Knobs(**json.loads((ucf / "dataset.json").read_text())["knobs"])
    text = np.load(shared_data / "text_embeddings/ucf-prompt.npy")
    _, d = class_directions(text.astype(np.float64), knobs.generic_weight, knobs.confusion_tau)
    split = read_split(ucf / "test.csv")
    inside, outside = [], []
    for i, video in enumerate(split.videos[:140]):  # the anomalous videos come first in the list
        if video.primary == 0:
            continue
        proj = video.load() @ d[video.primary]
        labels = gt.frames_of(i)[::16] > 0
        inside.append(proj[labels].mean())
        outside.append(proj[~labels].mean() if (~labels).any() else np.nan)
    assert np.nanmean(np.array(inside) - np.array(outside)) > 1.0


def test_train_split_and_truth(ucf: Path) -> None:
    meta = json.loads((ucf / "dataset.json").read_text())
    assert meta["layout"] == "ucf" and meta["seed"] == 3 and meta["crops"] == 10
    split = read_split(ucf / "train.csv", crops=10)
    assert len(split) == meta["train_videos"] and len({v.label for v in split.videos}) == 14
    truth = np.load(ucf / "train_truth.npz")
    for video in split.videos:
        t = video.load(9).shape[0]
        binary, classes = truth[f"binary/{video.name}"], truth[f"classes/{video.name}"]
        assert binary.shape == classes.shape == (t,)
        assert (binary.any() == (video.primary > 0)) and set(np.unique(classes)) <= {0, video.primary}
    item = FeatureDataset(split, seed=0)[0]
    assert item["features"].shape == (256, 512) and item["multi_hot"].shape == (14,)


def test_same_seed_same_dataset(ucf: Path, tmp_path: Path, shared_data: Path) -> None:
    generate("ucf", tmp_path, seed=3, scale=SCALE, data_dir=shared_data)
    assert (tmp_path / "train.csv").read_text() == (ucf / "train.csv").read_text()
    train_file = (tmp_path / "train.csv").read_text().splitlines()[5].split(",")[0]
    for rel in ("features/Abuse028_x264__5.npy", train_file):
        np.testing.assert_array_equal(np.load(tmp_path / rel), np.load(ucf / rel))
    with pytest.raises(FileExistsError, match="--force"):
        generate("ucf", tmp_path, seed=3, scale=SCALE, data_dir=shared_data)


@pytest.mark.slow
def test_xd_layout(tmp_path: Path, shared_data: Path) -> None:
    generate("xd", tmp_path, seed=0, scale=0.005, data_dir=shared_data)
    gt = load_ground_truth(tmp_path)
    assert len(gt.names) == 800 and gt.label_map.dataset == "xd"
    assert gt.num_snippets == [len(np.load(_gt_file(shared_data, "xd", n))) // 16 for n in gt.names]
    split = read_split(tmp_path / "train.csv", crops=5)
    multi = [v for v in split.videos if v.multi_hot.sum() > 1]
    assert multi, "the stratified subset keeps the multi-label videos"
    truth = np.load(tmp_path / "train_truth.npz")
    video = multi[0]
    assert set(np.unique(truth[f"classes/{video.name}"])) <= {0, *np.flatnonzero(video.multi_hot)}


def test_knobs_from_the_command_line_are_typed_and_checked() -> None:
    knobs = parse_knobs(["distractor_rate=3", "drift_dim=8"])
    assert knobs.distractor_rate == 3.0 and knobs.drift_dim == 8 and isinstance(knobs.drift_dim, int)
    assert knobs.noise_norm == Knobs().noise_norm
    with pytest.raises(SystemExit, match="distractor_rat.*NAME one of"):
        parse_knobs(["distractor_rat=3"])
    with pytest.raises(SystemExit, match="'many' is not a int"):
        parse_knobs(["drift_dim=many"])
