from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.bundle import HEAD_INPUTS, HEAD_OUTPUTS, file_sha256, load_bundle
from tests.test_distill import WINDOW, build_student_run
from train.models.student import Student
from train.export.bundle import export_bundle, sample_windows


# exporting two models and verifying them takes some 20-30 s: the tests that need the bundle are marked slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, Path, Path]:
    teacher, student = build_student_run(tmp_path_factory.getbasetemp() / "h8_runs")
    out = tmp_path_factory.mktemp("bundle")
    export_bundle(student, out, clip="tiny", encode_every=2)
    return teacher, student, out


def test_sample_windows_are_ring_buffer_windows() -> None:
    feats = np.arange(10, dtype=np.float32)[:, None].repeat(512, 1)
    x, mask = sample_windows([feats], 4)
    assert x.shape == (4, 4, 512)  # after snippets 1, 3, 4 and 10
    assert mask.sum(1).tolist() == [1, 3, 4, 4]
    assert x[:, :, 0].tolist() == [[0, 0, 0, 0], [0, 1, 2, 0], [0, 1, 2, 3], [6, 7, 8, 9]]


@pytest.mark.slow
def test_bundle_loads_on_the_edge_and_head_matches_torch(bundle: tuple[Path, Path, Path]) -> None:
    _, run, out = bundle
    b = load_bundle(out)
    manifest = b.manifest
    assert manifest.clip.random and manifest.clip.source == "tiny"
    assert b.encode_every == 2 and b.window == WINDOW and b.levels == 2 and manifest.dataset == "ucf"
    assert b.text_embeddings.shape == (2, len(b.classes), 512) and b.classes[0] == "normal"
    assert set(manifest.files) >= {"head.onnx", "clip_visual.onnx", "text_embeddings.npz"}
    assert all(file_sha256(out / name) == digest for name, digest in manifest.files.items())
    assert manifest.metrics["head_check"]["max_abs_diff_binary"] <= 1e-4
    assert {"teacher", "student_offline", "student_streaming"} <= set(manifest.metrics)
    assert b.smoother_params().m >= 1

    head = OnnxRuntimeBackend(b.file("head"))
    assert tuple(s.name for s in head.inputs) == HEAD_INPUTS and tuple(s.name for s in head.outputs) == HEAD_OUTPUTS
    student, _ = Student.load_run(run)
    feats = np.load(run.parent / "data/features/test3__0.npy")
    x, mask = sample_windows([feats], b.window)
    for batch in (1, len(x)):  # dynamic batch
        got = head.run({"features": x[:batch], "mask": mask[:batch], "text": b.text_embeddings})
        with torch.no_grad():
            ref = student(torch.from_numpy(x[:batch]), torch.from_numpy(mask[:batch]),
                          torch.from_numpy(b.text_embeddings))
        np.testing.assert_allclose(got["binary"], ref[0].numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(got["classes"], ref[1].numpy(), rtol=0, atol=1e-5)

    clip = OnnxRuntimeBackend(b.file("clip_visual"))
    pixels = np.zeros((1, 3, 224, 224), np.float32)
    assert clip.run({"pixels": pixels})["image_embeds"].shape == (1, 512)


@pytest.mark.slow
def test_threshold_is_a_quantile_of_normal_training_scores(bundle: tuple[Path, Path, Path]) -> None:
    from train.data.release import read_split
    from train.export.bundle import calibrated_smoother
    from train.evaluation.stream import snippet_scores, stream_batched

    _, run, out = bundle
    b = load_bundle(out)
    info = b.manifest.metrics["threshold"]
    assert info["source"] == "normal training videos" and info["quantile"] == 0.995 and info["videos"] >= 1
    params = b.smoother_params()
    assert params.theta_on == params.theta_off and (params.m, params.g) == (5, 7)  # UCF CAR defaults kept
    student, _ = Student.load_run(run)
    text = torch.from_numpy(b.text_embeddings)
    split = read_split(run.parent / "data/train.csv")
    scores = np.concatenate([snippet_scores(stream_batched(student, v.load(0), text), params)[0]
                             for v in split.videos if v.primary == 0])
    assert np.mean(scores >= params.theta_on) == pytest.approx(0.005, abs=1.5 / len(scores) + 1e-9)
    default, info = calibrated_smoother(student, b.text_embeddings, None, None, "ucf", 0.0)
    assert info == {"source": "car default", "warmup": 0} and default.theta_on == 0.5


@pytest.mark.slow
def test_new_categories_without_retraining(bundle: tuple[Path, Path, Path]) -> None:
    from train.export.prompts import recompute

    teacher, _, out = bundle
    classes = ("normal", "fighting", "falling", "fire")
    recompute(teacher, classes, out / "text_embeddings.npz")
    b = load_bundle(out)  # manifest updated: classes, hash, sha256
    assert b.classes == classes and b.text_embeddings.shape == (2, 4, 512)
    head = OnnxRuntimeBackend(b.file("head"))
    x = np.random.default_rng(0).normal(0, 0.3, (3, b.window, 512)).astype(np.float32)
    got = head.run({"features": x, "mask": np.ones((3, b.window), bool), "text": b.text_embeddings})
    assert got["classes"].shape == (3, 2, b.window, 4)
    np.testing.assert_allclose(got["classes"].sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_export_refuses_bad_encode_every(bundle: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, run, _ = bundle
    with pytest.raises(ValueError, match="encode_every"):
        export_bundle(run, tmp_path / "b", clip="tiny", encode_every=17)
    assert not (tmp_path / "b" / "manifest.json").exists()


@pytest.mark.slow
def test_manifest_is_plain_json(bundle: tuple[Path, Path, Path]) -> None:
    data = json.loads((bundle[2] / "manifest.json").read_text())
    head = data["models"]["head"]
    assert data["schema_version"] == 1 and (head["file"], head["precision"]) == ("head.onnx", "fp32")
    assert data["versions"]["opset"] == 17 and data["created"].endswith("+00:00")
