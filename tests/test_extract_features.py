"""edge.snippets (batch and incremental, hand-computed) and train.data.extract on the real sample videos."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.preprocess import center_crop, preprocess
from showcase.scenes import write_scene_video
from edge.snippets import (
    SnippetAccumulator,
    encoded_frame_indices,
    encoded_offsets,
    snippet_count,
    snippet_features,
)
from train.data.extract import crop_views, main, read_labels
from edge.backends import cosine_rows
from train.data.labels import UCF, XD


# ---------------------------------------------------------------- snippets
@pytest.mark.parametrize(("k", "offsets"), [(1, list(range(16))), (3, [0, 3, 6, 9, 12, 15]), (5, [0, 5, 10, 15]),
                                            (8, [0, 8]), (16, [0])])
def test_encoded_offsets(k: int, offsets: list[int]) -> None:
    assert encoded_offsets(k).tolist() == offsets


@pytest.mark.parametrize("bad", [0, 17, 2.5, "4"])
def test_encoded_offsets_rejects_bad_k(bad: object) -> None:
    with pytest.raises(ValueError, match="encode_every must be an integer in 1..16"):
        encoded_offsets(bad)  # type: ignore[arg-type]


def test_snippet_features_hand_computed() -> None:
    assert snippet_count(47) == 2 and snippet_count(48) == 3 and snippet_count(15) == 0
    assert encoded_frame_indices(40, 8).tolist() == [0, 8, 16, 24]  # 2 whole snippets, frames 32..39 dropped
    emb = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 8.0]], np.float32)  # frames 0, 8, 16, 24
    np.testing.assert_array_equal(snippet_features(emb, 8), [[2.0, 1.0], [6.0, 6.0]])
    with pytest.raises(ValueError, match="3 embeddings do not fill whole snippets of 2"):
        snippet_features(emb[:3], 8)


def _incremental(all_frames: np.ndarray, k: int) -> list[tuple[int, np.ndarray]]:
    acc = SnippetAccumulator(k)
    out = []
    for i, emb in enumerate(all_frames):
        snippet = acc.push(i, emb if acc.needs_encoding(i) else None)
        if snippet is not None:
            out.append((snippet.index, snippet.feature))
    assert acc.incomplete == 0
    return out


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 16), frames=st.integers(0, 90))
def test_encoded_frames_only_with_skip_to_equal_every_frame(k: int, frames: int) -> None:
    """The device's accumulator sees only the encoded frames (skip_to before each and at the end of the file):
    the same snippets as the extractor that pushes every frame, the last whole one included."""
    embeds = np.random.default_rng(frames).normal(size=(frames, 3)).astype(np.float32)
    acc = SnippetAccumulator(k)
    out = []
    for i in range(frames):
        if acc.needs_encoding(i):
            out += acc.skip_to(i)
            snippet = acc.push(i, embeds[i])
            out += [snippet] if snippet is not None else []
    out += acc.skip_to(frames)
    expected = _incremental(embeds, k)
    assert [s.index for s in out] == [i for i, _ in expected] == list(range(snippet_count(frames)))
    for snippet, (_, feature) in zip(out, expected):
        np.testing.assert_array_equal(snippet.feature, feature)
    assert acc.incomplete == 0


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 16), frames=st.integers(0, 90), crops=st.integers(1, 3))
def test_accumulator_agrees_with_batch(k: int, frames: int, crops: int) -> None:
    rng = np.random.default_rng(frames * 17 + k)
    all_frames = rng.normal(size=(frames, crops, 8)).astype(np.float32)  # an embedding per frame and crop
    batch = snippet_features(all_frames[encoded_frame_indices(frames, k)], k)
    streamed = _incremental(all_frames, k)
    assert len(batch) == len(streamed) == frames // 16
    assert [i for i, _ in streamed] == list(range(frames // 16))
    for (_, feature), expected in zip(streamed, batch):
        np.testing.assert_allclose(feature, expected, rtol=1e-6, atol=1e-6)


def test_accumulator_skips_snippets_the_stream_jumped_over() -> None:
    acc = SnippetAccumulator(4)  # offsets 0, 4, 8, 12
    emitted = []
    for i in [*range(0, 10), *range(20, 48)]:  # frames 10..19 dropped: snippets 0 and 1 incomplete
        snippet = acc.push(i, np.full(2, i, np.float32) if acc.needs_encoding(i) else None)
        if snippet is not None:
            emitted.append(snippet)
    assert [s.index for s in emitted] == [2]
    np.testing.assert_array_equal(emitted[0].feature, [38.0, 38.0])  # mean of 32, 36, 40, 44
    assert acc.incomplete == 2


def test_accumulator_rejects_misuse() -> None:
    acc = SnippetAccumulator(2)
    acc.push(0, np.zeros(2))
    with pytest.raises(ValueError, match="frame 0 pushed after frame 0"):
        acc.push(0, np.zeros(2))
    with pytest.raises(ValueError, match="frame 1 is not encoded"):
        acc.push(1, np.zeros(2))
    with pytest.raises(ValueError, match="frame 2 needs its embedding"):
        acc.push(2, None)
    acc.reset()
    assert acc.push(0, np.zeros(2)) is None


# ---------------------------------------------------------------- crops and labels
def test_crop_geometry_hand_computed() -> None:
    rows, cols = np.mgrid[0:256, 0:512]
    frame = np.stack([cols // 2, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)  # B = col / 2, G = row
    views = crop_views(frame, 10)
    assert views.shape == (10, 224, 224, 3)
    # crop 0 is the device's view: shorter side 256 -> 224 (frame 224 x 448), centre columns 112..335
    np.testing.assert_array_equal(views[0], center_crop(frame))
    # corners come from the frame at shorter side 256 (here unchanged): top-left (0, 0), top-right (0, 288),
    # bottom-left (32, 0), bottom-right (32, 288)
    assert [(int(v[0, 0, 1]), 2 * int(v[0, 0, 0])) for v in views[1:5]] == [(0, 0), (0, 288), (32, 0), (32, 288)]
    np.testing.assert_array_equal(views[5:], views[:5, :, ::-1])  # mirrors
    np.testing.assert_array_equal(crop_views(frame, 5), views[:5])
    np.testing.assert_array_equal(crop_views(frame, 1), views[:1])


def test_read_labels_lines_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("# comment\nclip1 Abuse\nclip2.mp4   Normal\n")
    assert read_labels(tmp_path / "a.txt", UCF) == {"clip1": "Abuse", "clip2": "Normal"}
    (tmp_path / "b.csv").write_text("name,label\nv1,B2-0-0\nv2,A\n")
    assert read_labels(tmp_path / "b.csv", XD) == {"v1": "B2-0-0", "v2": "A"}
    (tmp_path / "c.txt").write_text("clip1 Abuse\nclip2 Fight\n")
    with pytest.raises(ValueError, match="unknown ucf label 'Fight' in .*c.txt:2"):
        read_labels(tmp_path / "c.txt", UCF)


# ---------------------------------------------------------------- extraction on real videos
def _features(out: Path, name: str, k: int = 0) -> np.ndarray:
    return np.load(out / f"{name}__{k}.npy")


@pytest.fixture(scope="module")
def videos(scene_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A list file: two rendered videos (an explosion, a normal street) and one file that is not a video."""
    folder = tmp_path_factory.mktemp("videos")
    (folder / "broken.mp4").write_text("not a video\n")
    street = folder / "street.mp4"
    write_scene_video(street, "Normal", frames=64, fps=12.5, size=(768, 432), seed=1)
    listing = folder / "videos.txt"
    listing.write_text("\n".join([str(scene_video), str(street), "broken.mp4"]) + "\n")
    (folder / "labels.txt").write_text("explosion Explosion\n")
    return listing


@pytest.fixture(scope="module")
def torch_run(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("torch")
    code = main(["--videos", str(videos), "--out", str(out), "--clip", "tiny", "--backend", "torch",
                 "--max-frames", "40", "--crops", "5", "--batch", "16", "--encode-every", "1",
                 "--labels", str(videos.parent / "labels.txt")])
    assert code == 1  # broken.mp4 fails, the others are done
    return out


def test_extractor_writes_vadclip_format_and_reports_failures(torch_run: Path) -> None:
    for name in ("explosion", "street"):
        for k in range(5):
            feats = _features(torch_run, name, k)
            assert feats.shape == (2, 512) and feats.dtype == np.float32  # floor(40 / 16) snippets
    assert not list(torch_run.glob("broken__*"))
    with open(torch_run / "list.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in rows)
    assert {Path(r["path"]).name: r["label"] for r in rows}["explosion__3.npy"] == "Explosion"
    assert {Path(r["path"]).name: r["label"] for r in rows}["street__0.npy"] == "Normal"


def test_extractor_resumes_and_refuses_mixed_settings(torch_run: Path, videos: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in torch_run.glob("*.npy")}
    args = ["--videos", str(videos), "--out", str(torch_run), "--clip", "tiny", "--max-frames", "40",
            "--encode-every", "1"]
    assert main([*args, "--crops", "5"]) == 1  # nothing to redo but broken.mp4
    assert {p.name: p.stat().st_mtime_ns for p in torch_run.glob("*.npy")} == before
    assert main([*args, "--crops", "10"]) == 2  # other settings into the same folder


def test_onnx_and_torch_backends_give_the_same_features(torch_run: Path, videos: Path, tmp_path: Path) -> None:
    assert main(["--videos", str(videos), "--out", str(tmp_path), "--clip", "tiny", "--backend", "onnx",
                 "--max-frames", "40", "--crops", "5", "--encode-every", "1"]) == 1
    assert (tmp_path / "clip_visual.onnx").is_file()
    for name in ("explosion", "street"):
        for k in range(5):
            onnx_feats, torch_feats = _features(tmp_path, name, k), _features(torch_run, name, k)
            assert onnx_feats.shape == torch_feats.shape == (2, 512)
            assert cosine_rows(onnx_feats, torch_feats).min() > 0.999


def test_crop_zero_is_the_device_path(scene_video: Path, tmp_path: Path, torch_run: Path) -> None:
    """Crop 0 of a multi-crop run = edge.preprocess -> CLIP -> mean of encoded frames, recomputed here."""
    import torch

    from train.models.clip_visual import load_clip_visual

    cap = cv2.VideoCapture(str(scene_video))
    frames = [cap.read()[1] for _ in range(32)]
    cap.release()
    with torch.inference_mode():
        embeds = load_clip_visual("tiny")(torch.from_numpy(preprocess(frames))).numpy()  # [32, 512]
    expected = snippet_features(embeds, 1)  # [2, 512]
    np.testing.assert_allclose(_features(torch_run, "explosion", 0), expected, rtol=1e-5, atol=1e-5)


def test_snippet_count_is_floor_of_frames_with_sparse_encoding(scene_video: Path, tmp_path: Path) -> None:
    video = scene_video
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.grab():
        frames += 1
    cap.release()
    assert frames == 377
    (tmp_path / "list.txt").write_text(f"{video}\n")
    assert main(["--videos", str(tmp_path / "list.txt"), "--out", str(tmp_path / "out"), "--clip", "tiny",
                 "--encode-every", "16", "--batch", "8"]) == 0
    assert _features(tmp_path / "out", "explosion").shape == (377 // 16, 512)


def test_openvino_backend_gives_the_same_features(torch_run: Path, videos: Path, tmp_path: Path) -> None:
    from edge.backends.openvino import available
    from train.data.extract import resolve_backend

    assert resolve_backend("auto", "cuda:0") == "torch" and resolve_backend("onnx", None) == "onnx"
    assert resolve_backend("auto", None) == ("openvino" if available() else "onnx")
    if not available():
        pytest.skip("openvino is not installed (pip install 'cplvad-edge[openvino]')")
    assert main(["--videos", str(videos), "--out", str(tmp_path), "--clip", "tiny", "--backend", "openvino",
                 "--max-frames", "40", "--crops", "5", "--encode-every", "1"]) == 1
    for name in ("explosion", "street"):
        for k in range(5):
            assert cosine_rows(_features(tmp_path, name, k), _features(torch_run, name, k)).min() > 0.999
