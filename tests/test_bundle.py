"""edge.bundle: the device's bundle loader accepts a good bundle and refuses each bad one with the reason.

The model files here are small byte blobs: the loader only checks their presence and sha256 (running them is
tested on a real export in test_export.py).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import BundleError, file_sha256, load_bundle
from edge.smoother import SmootherParams

CLASSES = ["normal", "fighting", "shooting"]
LEVELS = 2


def write_text(path: Path, classes: list[str], shape: tuple[int, ...], hash_: str = "abc-l2") -> None:
    np.savez(path, classes=np.array(classes), embeddings=np.ones(shape, np.float32), hash=np.array(hash_),
             source=np.array("tiny"))


def seal(folder: Path, manifest: dict) -> None:
    """Write the manifest with the current sha256 of every listed file."""
    manifest["files"] = {name: file_sha256(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture()
def bundle(tmp_path: Path) -> tuple[Path, dict]:
    (tmp_path / "head.onnx").write_bytes(b"head model bytes")
    (tmp_path / "clip_visual.onnx").write_bytes(b"clip model bytes")
    write_text(tmp_path / "text_embeddings.npz", CLASSES, (LEVELS, 3, 512))
    manifest = {
        "schema_version": 1, "name": "cplvad-student", "version": "test", "created": "2026-01-01T00:00:00+00:00",
        "dataset": "xd", "classes": CLASSES,
        "snippet": {"frames_per_snippet": 16, "encode_every": 4, "embed_dim": 512},
        "preprocess": {"size": 224, "mean": [0.48145466, 0.4578275, 0.40821073],
                       "std": [0.26862954, 0.26130258, 0.27577711]},
        "window": 64, "levels": LEVELS,
        "smoother": {"theta_on": 0.6, "theta_off": 0.4, "m": 3, "g": 5, "aggregation": "rbf", "rbf_eps": 0.001,
                     "vote_thresholds": [0.55, 0.6]},
        "clip": {"source": "real:clip-vit-base-patch16", "random": False},
        "models": {"head": {"file": "head.onnx", "precision": "fp32"},
                   "clip_visual": {"file": "clip_visual.onnx", "precision": "fp32"}},
        "text_embeddings": {"file": "text_embeddings.npz", "hash": "abc-l2"},
        "metrics": {}, "versions": {},
        "files": {"head.onnx": "", "clip_visual.onnx": "", "text_embeddings.npz": ""},
    }
    seal(tmp_path, manifest)
    return tmp_path, manifest


def test_loads_a_good_bundle(bundle: tuple[Path, dict], caplog: pytest.LogCaptureFixture) -> None:
    path, _ = bundle
    with caplog.at_level(logging.WARNING):
        b = load_bundle(path)
    assert not caplog.records  # real CLIP: no warning
    assert b.classes == tuple(CLASSES) and b.window == 64 and b.levels == LEVELS and b.encode_every == 4
    assert not b.clip_is_random and b.path == path
    assert b.file("head") == path / "head.onnx" and b.file("text_embeddings.npz") == path / "text_embeddings.npz"
    assert b.text_embeddings.shape == (LEVELS, 3, 512) and b.text_embeddings.dtype == np.float32
    assert b.smoother_params() == SmootherParams(theta_on=0.6, theta_off=0.4, m=3, g=5, vote_thresholds=(0.55, 0.6))
    assert b.preprocess().size == 224
    with pytest.raises(BundleError, match="no model or file 'engine'"):
        b.file("engine")


def test_random_clip_warns_loudly(bundle: tuple[Path, dict], caplog: pytest.LogCaptureFixture) -> None:
    path, manifest = bundle
    manifest["clip"] = {"source": "random", "random": True}
    seal(path, manifest)
    with caplog.at_level(logging.WARNING):
        assert load_bundle(path).clip_is_random
    assert "features are not real CLIP: detections are meaningless outside the demo" in caplog.text


def test_refuses_a_missing_file(bundle: tuple[Path, dict]) -> None:
    path, _ = bundle
    (path / "clip_visual.onnx").unlink()
    with pytest.raises(BundleError, match="missing file clip_visual.onnx"):
        load_bundle(path)


def test_refuses_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)


def test_refuses_a_hash_mismatch(bundle: tuple[Path, dict]) -> None:
    path, _ = bundle
    (path / "head.onnx").write_bytes(b"head model bytes, changed")
    with pytest.raises(BundleError, match="head.onnx: sha256 mismatch"):
        load_bundle(path)
    assert load_bundle(path, verify_hashes=False).window == 64  # a fast start can skip the check


def test_refuses_a_newer_schema(bundle: tuple[Path, dict]) -> None:
    path, manifest = bundle
    manifest["schema_version"] = 2
    manifest["something_new"] = {"x": 1}
    seal(path, manifest)
    with pytest.raises(BundleError, match="schema_version 2 is newer than this runtime knows"):
        load_bundle(path)


def test_refuses_classes_that_differ_from_the_text_cache(bundle: tuple[Path, dict]) -> None:
    path, manifest = bundle
    manifest["classes"] = ["normal", "fighting", "riot"]
    seal(path, manifest)
    with pytest.raises(BundleError, match=r"classes \['normal', 'fighting', 'shooting'\] differ"):
        load_bundle(path)


def test_refuses_a_text_cache_of_the_wrong_shape(bundle: tuple[Path, dict]) -> None:
    path, manifest = bundle
    write_text(path / "text_embeddings.npz", CLASSES, (LEVELS + 1, 3, 512))
    seal(path, manifest)
    with pytest.raises(BundleError, match=r"shape \[3, 3, 512\]; expected .* \[2, 3, 512\]"):
        load_bundle(path)


@pytest.mark.parametrize("value", [0, 17])
def test_refuses_encode_every_outside_1_to_16(bundle: tuple[Path, dict], value: int) -> None:
    path, manifest = bundle
    manifest["snippet"]["encode_every"] = value
    seal(path, manifest)
    with pytest.raises(BundleError, match=f"encode_every={value}; expected 1..16"):
        load_bundle(path)


def test_refuses_unknown_keys_and_bad_values(bundle: tuple[Path, dict]) -> None:
    path, manifest = bundle
    manifest["windw"] = 32
    seal(path, manifest)
    with pytest.raises(BundleError, match="windw: Extra inputs are not permitted"):
        load_bundle(path)
    del manifest["windw"]
    manifest["smoother"]["theta_off"] = 0.9  # above theta_on
    seal(path, manifest)
    with pytest.raises(BundleError, match="theta_off"):
        load_bundle(path)


def test_refuses_a_text_hash_that_differs(bundle: tuple[Path, dict]) -> None:
    path, manifest = bundle
    manifest["text_embeddings"]["hash"] = "other"
    seal(path, manifest)
    with pytest.raises(BundleError, match="hash 'abc-l2' differs"):
        load_bundle(path)
