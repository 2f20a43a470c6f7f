"""CLIP by Hugging Face id through an offline HF cache, weights identity, and the checks that refuse to mix encoders.

The cache is the real hub layout (``models--org--name/snapshots/<commit>/`` + ``refs/main``) holding a
random-initialised tiny CLIPModel written by ``save_pretrained``; the commands run as a user runs them, in a
subprocess with ``HF_HUB_CACHE`` / ``HF_HOME`` pointing at it and ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from train.data.extract import main as extract_main
from train.data.provenance import feature_record, resolve_text_source, same_weights
from train.models.clip_source import describe, identity, is_hub_id, tiny_config, weights_sha256
from train.paths import PROJECT_ROOT

REPO = "cplvad-test/tiny-clip"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """(environment of an offline HF cache holding REPO at COMMIT, the snapshot folder)."""
    from transformers import CLIPModel

    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    torch.manual_seed(3)
    CLIPModel(tiny_config()).eval().save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    return env, snapshot


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short rendered videos (48 frames: 3 snippets), a moving square on a coloured ground."""
    folder = tmp_path_factory.mktemp("videos")
    for i, colour in enumerate(((40, 90, 160), (150, 60, 30))):
        writer = cv2.VideoWriter(str(folder / f"clip{i}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
        for t in range(48):
            frame = np.full((120, 160, 3), colour, np.uint8)
            cv2.rectangle(frame, (10 + 2 * t, 40), (40 + 2 * t, 70), (255, 255, 255), -1)
            writer.write(frame)
        writer.release()
    return folder


def cli(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_hub_ids_and_folders_are_told_apart(tmp_path: Path) -> None:
    assert is_hub_id("openai/clip-vit-base-patch16") and is_hub_id("org/name@0123abc")
    assert not is_hub_id("tiny") and not is_hub_id("random") and not is_hub_id("a/b/c")
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    assert not is_hub_id(tmp_path / "org" / "name")  # an existing folder is a folder
    assert describe("openai/clip-vit-base-patch16") == "hf:openai/clip-vit-base-patch16"


def test_extract_by_hub_id_offline_records_repo_revision_and_weights(hub, videos: Path, tmp_path: Path) -> None:
    env, snapshot = hub
    out = tmp_path / "by_id"
    result = cli("train.data.extract", "--videos", str(videos), "--out", str(out), "--clip", REPO, "--batch", "8",
                 env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "extract.json").read_text())
    ident = record["clip_identity"]
    assert (ident["repo_id"], ident["revision"], ident["random"]) == (REPO, COMMIT, False)
    assert ident["weights_sha256"] == weights_sha256(snapshot) is not None
    assert record["clip"] == f"hf:{REPO}" and record["encode_every"] == 16  # the default policy

    # the same weights from the snapshot folder: same features, same identity (by the weights' sha256)
    folder_out = tmp_path / "by_folder"
    assert extract_main(["--videos", str(videos), "--out", str(folder_out), "--clip", str(snapshot)]) == 0
    for name in ("clip0", "clip1"):
        a, b = np.load(out / f"{name}__0.npy"), np.load(folder_out / f"{name}__0.npy")
        assert a.shape == (3, 512)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    by_folder = feature_record([folder_out / "clip0__0.npy"])["clip"]
    assert by_folder["kind"] == "folder" and same_weights(ident, by_folder)
    assert not same_weights(ident, identity("tiny", 0))

    # auto text source follows the features' encoder, pinned to the cached commit
    assert resolve_text_source("auto", feature_record([out / "clip0__0.npy"]), where="x") == f"{REPO}@{COMMIT}"


def test_an_id_missing_from_the_offline_cache_is_one_clear_error(hub, videos: Path, tmp_path: Path) -> None:
    env, _ = hub
    result = cli("train.data.extract", "--videos", str(videos), "--out", str(tmp_path / "x"), "--clip",
                 "cplvad-test/not-cached", env=env)
    assert result.returncode == 2
    assert "cplvad-test/not-cached" in result.stderr and "HF_HUB_OFFLINE=1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def student_run(tmp_path_factory) -> Path:
    from tests.test_distill import build_student_run

    return build_student_run(tmp_path_factory.getbasetemp() / "h8_runs")[1]


@pytest.mark.slow
def test_export_by_hub_id_offline(hub, student_run: Path, tmp_path: Path) -> None:
    from edge.bundle import load_bundle

    env, snapshot = hub
    out = tmp_path / "bundle"
    result = cli("train.export.bundle", "--run", str(student_run), "--out", str(out), "--clip", REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = load_bundle(out)
    clip = bundle.manifest.clip
    assert clip.source == f"hf:{REPO}" and not clip.random
    assert clip.identity["revision"] == COMMIT and clip.identity["weights_sha256"] == weights_sha256(snapshot)
    assert clip.text["random"] and clip.text["kind"] == "tiny"  # the run's prompts were learned on tiny text
    assert "RANDOM" in result.stderr  # ... which the export says loudly
    sidecar = json.loads((out / "clip_visual.json").read_text())
    assert sidecar["identity"]["revision"] == COMMIT


def test_export_requires_an_explicit_clip(student_run: Path, tmp_path: Path) -> None:
    result = cli("train.export.bundle", "--run", str(student_run), "--out", str(tmp_path / "b"), env=dict(os.environ))
    assert result.returncode == 2 and "--clip is required" in result.stderr and "--clip random" in result.stderr


def _run_with_features(student_run: Path, tmp_path: Path, clip: dict, encode_every: int) -> Path:
    run = tmp_path / "run"
    shutil.copytree(student_run, run)
    prov = json.loads((run / "provenance.json").read_text())
    prov["features"] = {"clip": clip, "encode_every": encode_every, "folders": ["/features"]}
    (run / "provenance.json").write_text(json.dumps(prov))
    return run


def test_export_refuses_another_encoder_naming_both(hub, student_run: Path, tmp_path: Path) -> None:
    from train.export.bundle import export_bundle

    _, snapshot = hub
    run = _run_with_features(student_run, tmp_path, identity("tiny", 0), 16)
    with pytest.raises(ValueError) as err:
        export_bundle(run, tmp_path / "b", clip=str(snapshot))
    message = str(err.value)
    assert str(snapshot) in message and "'tiny' (RANDOM weights, seed 0)" in message and "--clip tiny" in message
    assert not (tmp_path / "b" / "head.onnx").exists()  # refused before any work


def test_export_refuses_another_snippet_policy(student_run: Path, tmp_path: Path) -> None:
    from train.export.bundle import export_bundle

    run = _run_with_features(student_run, tmp_path, identity("tiny", 0), 1)
    with pytest.raises(ValueError, match="--encode-every 16, but the run .* encode_every=1"):
        export_bundle(run, tmp_path / "b", clip="tiny", encode_every=16)


@pytest.mark.slow
def test_export_takes_the_recorded_policy_when_encoder_matches(student_run: Path, tmp_path: Path) -> None:
    from edge.bundle import load_bundle
    from train.export.bundle import export_bundle

    run = _run_with_features(student_run, tmp_path, identity("tiny", 0), 2)
    manifest = export_bundle(run, tmp_path / "b", clip="tiny")  # no --encode-every: the features' policy
    assert manifest.snippet.encode_every == 2 and load_bundle(tmp_path / "b").encode_every == 2
    assert manifest.clip.identity == identity("tiny", 0) and manifest.clip.random
