from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from train.data.dataset import FeatureDataset
from train.data.layouts import derive_layout, differences, frames_from_runs, load_layout, runs, split_by_counts
from train.data.release import load_ground_truth, read_split
from train.data.synth import (
    Generator,
    Knobs,
    REGIMES,
    class_directions,
    coverage,
    generate,
    parse_knobs,
    ramp,
    read_layout,
    stratified_subset,
)
from train.paths import public_file

SCALE = 0.01  # ~20 UCF / ~40 XD training videos; the test split is always the full real one


@pytest.fixture(scope="module")
def ucf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ucf")
    generate("ucf", out, seed=3, scale=SCALE)
    return out


def _text(layout: str) -> np.ndarray:
    return np.load(public_file("text_embeddings", f"{layout}-prompt.npy"))


def _real_frames(layout: str) -> list[np.ndarray]:
    """Per test video, the real frame-level ground truth, from the shipped layout file."""
    arrays = load_layout(layout)
    return [frames_from_runs(int(n), r) for n, r in
            zip(arrays["test_frames"], split_by_counts(arrays["gt_runs"], arrays["gt_run_counts"]))]


# ------------------------------------------------------------ the shipped real layouts


def test_runs_by_hand() -> None:
    gt = np.array([1, 1, 0, 0, 1, 0, 1, 1], np.float32)
    np.testing.assert_array_equal(runs(gt), [[0, 2], [4, 5], [6, 8]])
    np.testing.assert_array_equal(frames_from_runs(8, runs(gt)), gt)
    assert runs(np.zeros(5, np.float32)).shape == (0, 2) and not frames_from_runs(5, np.zeros((0, 2), int)).any()


@pytest.mark.parametrize("layout, videos, frames, anomalous, train", [
    ("ucf", 290, 1109680, 84128, 1610), ("xd", 800, 2330384, 537805, 3954)])
def test_shipped_layout_holds_the_real_test_set(layout: str, videos: int, frames: int, anomalous: int,
                                                train: int) -> None:
    """Counts taken from the original 290 / 800 per-video gt files; the mAP files agree with the segments."""
    arrays = load_layout(layout)
    real = _real_frames(layout)
    assert len(real) == len(arrays["test_names"]) == videos and len(arrays["train_names"]) == train
    assert sum(f.size for f in real) == frames and sum(int(f.sum()) for f in real) == anomalous
    assert all(f.size % 16 == 0 for f in real)
    shipped = np.load(io.BytesIO(arrays["gt_segment_npy"].tobytes()), allow_pickle=True)  # our own file
    labels = np.load(io.BytesIO(arrays["gt_label_npy"].tobytes()), allow_pickle=True)
    segments = split_by_counts(arrays["segments"], arrays["segment_counts"])
    classes = split_by_counts(arrays["segment_classes"], arrays["segment_counts"])
    assert [np.asarray(s, float).reshape(-1, 2).tolist() for s in shipped] == [s.tolist() for s in segments]
    assert [list(map(str, c)) for c in labels] == [c.tolist() for c in classes]




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


def test_class_directions() -> None:
    text = _text("ucf").astype(np.float64)
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


def test_generator_is_a_function_of_its_stream() -> None:
    real = read_layout("ucf")
    text = _text("ucf")
    gen = Generator(text, seed=0, knobs=Knobs(), event_lengths=real.event_lengths)
    video = lambda s: gen.video(np.random.default_rng(s), 50, [], [0], [0, 1])  # noqa: E731
    a, b, c = video(1), video(1), video(2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0]) and not np.allclose(a[0], a[1])
    norms = np.linalg.norm(a[0], axis=1)
    assert 7 < norms.mean() < 14  # like CLIP ViT-B/16 image embeddings
    assert np.corrcoef(a[0].ravel(), a[1].ravel())[0, 1] > 0.9  # two crops of one video are close


def test_context_regime_gives_some_scenes_a_class_as_their_whole_activity() -> None:
    """``context``: about ``context_fraction`` of the videos hold one class direction over their whole length at an
    anomaly's strength; the default regime draws nothing for it (its datasets are unchanged)."""
    real, text = read_layout("ucf"), _text("ucf")
    seed, knobs = REGIMES["context"]
    context = Generator(text, seed, parse_knobs(list(knobs)), real.event_lengths)
    plain = Generator(text, seed, Knobs(), real.event_lengths)
    _, d = class_directions(text.astype(np.float64), Knobs().generic_weight, Knobs().confusion_tau)
    lifted = []
    for s in range(200):
        a = context.video(np.random.default_rng(s), 40, [], [0], [0])[0]
        b = plain.video(np.random.default_rng(s), 40, [], [0], [0])[0]
        shift = (a - b).mean(0)  # the scene's persistent part the regime added
        if np.linalg.norm(shift) > 1e-3:
            cos = np.abs(d[1:] @ shift) / np.linalg.norm(shift)
            assert cos.max() > 0.999 and np.allclose(a - b, shift, atol=1e-3)  # one class, every snippet
            lifted.append(np.linalg.norm(shift))
    assert 0.2 < len(lifted) / 200 < 0.4 and 2.0 < np.median(lifted) < 4.5
    assert REGIMES["default"] == (0, ()) and REGIMES["context"][0] != 0  # a seed of its own


# ------------------------------------------------------------ generated set


def test_ucf_test_split_is_the_real_layout(ucf: Path) -> None:
    gt = load_ground_truth(ucf)
    arrays = load_layout("ucf")
    assert gt.names == arrays["test_names"].tolist() and len(gt.names) == 290
    real_frames = _real_frames("ucf")
    assert gt.num_snippets == [len(f) // 16 for f in real_frames]
    np.testing.assert_array_equal(gt.gt_frames, np.concatenate(real_frames))
    assert (ucf / "gt_segment.npy").read_bytes() == arrays["gt_segment_npy"].tobytes()  # VadCLIP's file as is
    assert (ucf / "gt_label.npy").read_bytes() == arrays["gt_label_npy"].tobytes()
    segments = split_by_counts(arrays["segments"], arrays["segment_counts"])
    assert [s.tolist() for s in gt.segments] == [s.tolist() for s in segments]
    assert read_split(ucf / "test.csv").videos[0].crops[0].name == "Abuse028_x264__5.npy"


def test_shipped_data_equals_the_original_files(ucf: Path, shared_data: Path) -> None:
    """The one extra check, where the original files are at hand (skipped in a user's clone): the shipped copies
    and layouts re-derive from them, and the generated test split has the published names, frames, mAP files."""
    for layout in ("ucf", "xd"):
        assert differences(derive_layout(layout, shared_data), load_layout(layout)) == [], layout
        name = f"text_embeddings/{layout}-prompt.npy"
        assert public_file(*name.split("/")).read_bytes() == (shared_data / name).read_bytes()
    assert public_file("clip", "bpe_simple_vocab_16e6.txt.gz").read_bytes() == \
        (shared_data / "clip/bpe_simple_vocab_16e6.txt.gz").read_bytes()
    gt = load_ground_truth(ucf)
    lines = (shared_data / "annotations/ucf/ucf_CLIP_rgbtest.csv").read_text().splitlines()[1:]
    assert gt.names == [line.split(",")[0].rsplit("/", 1)[1].rsplit("__", 1)[0] for line in lines]
    real = [np.load(shared_data / "gt" / "ucf" / f"{n}__9_gt.npy") for n in gt.names]
    np.testing.assert_array_equal(gt.gt_frames, np.concatenate(real))
    for name in ("gt_segment", "gt_label"):
        assert (ucf / f"{name}.npy").read_bytes() == (shared_data / f"annotations/ucf/{name}_ucf.npy").read_bytes()


def test_anomalies_sit_on_the_real_segments(ucf: Path) -> None:
    """Anomalous snippets move along their class direction, normal ones do not."""
    gt = load_ground_truth(ucf)
    knobs = Knobs(**json.loads((ucf / "dataset.json").read_text())["knobs"])
    text = _text("ucf")
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


def test_same_seed_same_dataset(ucf: Path, tmp_path: Path) -> None:
    generate("ucf", tmp_path, seed=3, scale=SCALE, workers=2)  # the fixture: one process
    for name in ("train.csv", "test.csv", "gt_frames.npy", "dataset.json"):
        assert (tmp_path / name).read_bytes() == (ucf / name).read_bytes(), name
    with np.load(tmp_path / "train_truth.npz") as a, np.load(ucf / "train_truth.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    train_file = (tmp_path / "train.csv").read_text().splitlines()[5].split(",")[0]
    for rel in ("features/Abuse028_x264__5.npy", train_file):
        np.testing.assert_array_equal(np.load(tmp_path / rel), np.load(ucf / rel))
    with pytest.raises(FileExistsError, match="--force"):
        generate("ucf", tmp_path, seed=3, scale=SCALE)


@pytest.mark.slow
def test_xd_layout(tmp_path: Path) -> None:
    generate("xd", tmp_path, seed=0, scale=0.005)
    gt = load_ground_truth(tmp_path)
    assert len(gt.names) == 800 and gt.label_map.dataset == "xd"
    assert gt.names == load_layout("xd")["test_names"].tolist()
    assert gt.num_snippets == [len(f) // 16 for f in _real_frames("xd")]
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
