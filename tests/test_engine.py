"""Engine build planning: which precision per model from the gate, optimisation profiles, and the CLI's refusal
without TensorRT. Building itself needs TensorRT (``trt`` mark, tests/test_tensorrt_backend.py)."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calibration.engine import main, plan_builds, profile_shapes
from edge.bundle import MANIFEST, SCHEMA_VERSION, Manifest, file_sha256, load_bundle
from edge.preprocess import CLIP_VIT_B16
from edge.smoother import SmootherParams

CLASSES = ("normal", "abuse", "fighting")


def _identity(path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _bundle(folder: Path, gate: dict[str, bool | None]) -> Path:
    """A bundle whose manifest records the INT8 gate per model (None: not calibrated)."""
    folder.mkdir(parents=True)
    text = np.zeros((2, len(CLASSES), 512), np.float32)
    np.savez(folder / "text_embeddings.npz", classes=np.array(CLASSES), embeddings=text, hash=np.array("h"))
    models = {}
    for model in ("head", "clip_visual"):
        _identity(folder / f"{model}.onnx")
        int8 = None
        if gate[model] is not None:
            _identity(folder / f"{model}.s8s8.onnx")
            int8 = {"method": "minmax", "flavours": {"s8s8": {"file": f"{model}.s8s8.onnx", "passed": gate[model],
                                                              "reason": "within budget" if gate[model] else
                                                              "cosine p1 0.9000 < 0.98"}}}
        models[model] = {"file": f"{model}.onnx", "precision": "fp32", "int8": int8}
    files = {p.name: file_sha256(p) for p in folder.iterdir()}
    manifest = Manifest(schema_version=SCHEMA_VERSION, version="t", created="2026-01-01T00:00:00+00:00",
                        dataset="ucf", classes=CLASSES, snippet={"encode_every": 4}, preprocess=CLIP_VIT_B16.to_dict(),
                        window=16, levels=2, smoother=dataclasses.asdict(SmootherParams()),
                        clip={"source": "tiny", "random": True}, models=models,
                        text_embeddings={"file": "text_embeddings.npz", "hash": "h"}, files=files)
    (folder / MANIFEST).write_text(manifest.to_json())
    return folder


def test_auto_plan_follows_the_gate(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path / "b", {"clip_visual": True, "head": False}))
    plans = {p.model: p for p in plan_builds(bundle)}
    assert plans["clip_visual"].precision == "int8" and plans["clip_visual"].onnx.name == "clip_visual.s8s8.onnx"
    assert plans["head"].precision == "fp16" and plans["head"].onnx.name == "head.onnx"
    assert "failed the INT8 gate: cosine p1 0.9000 < 0.98" in plans["head"].reason
    with pytest.raises(ValueError, match="head: INT8 requested but cosine p1"):
        plan_builds(bundle, "int8")
    assert {p.precision for p in plan_builds(bundle, "fp32")} == {"fp32"}


def test_uncalibrated_bundle_builds_fp16(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path / "b", {"clip_visual": None, "head": None}))
    expected = ("fp16", "no INT8 calibration in the manifest")
    assert [(p.precision, p.reason) for p in plan_builds(bundle)] == [expected] * 2
    with pytest.raises(ValueError, match="not calibrated"):
        plan_builds(bundle, "int8")
    with pytest.raises(ValueError, match="precision 'int4'"):
        plan_builds(bundle, "int4")


def test_profiles(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path / "b", {"clip_visual": None, "head": None}))
    clip = profile_shapes("clip_visual", bundle, max_batch=8, opt_batch=4, max_classes=64)
    assert clip == {"pixels": ((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224))}
    head = profile_shapes("head", bundle, max_batch=8, opt_batch=1, max_classes=32)
    assert head["features"] == ((1, 16, 512), (1, 16, 512), (8, 16, 512))
    assert head["mask"] == ((1, 16), (1, 16), (8, 16))
    assert head["text"] == ((2, 2, 512), (2, 3, 512), (2, 32, 512))
    with pytest.raises(ValueError, match="opt batch 9"):
        profile_shapes("head", bundle, max_batch=8, opt_batch=9, max_classes=32)
    with pytest.raises(ValueError, match="3 classes > max_classes 2"):
        profile_shapes("head", bundle, max_batch=8, opt_batch=1, max_classes=2)


def test_cli_without_tensorrt_says_where_to_build(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the CLI would build")
    bundle = _bundle(tmp_path / "b", {"clip_visual": True, "head": True})
    assert main(["--bundle", str(bundle)]) == 1
    assert "build engines on the Jetson" in caplog.text
