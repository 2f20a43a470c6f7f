"""TensorRT engine files: header round trip, naming, version / GPU / source checks (no TensorRT needed), and the
backend itself where TensorRT and a CUDA GPU are present (``trt`` mark)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edge.backends import open_backend
from edge.backends.tensorrt import (MAGIC, EngineHeader, EngineMismatch, check_header, engine_name, engines_for,
                                    find_engine, parse_engine_name, read_engine, sm_string, trt_major_minor,
                                    write_engine)

HEADER = EngineHeader(model="head", precision="int8", tensorrt="10.3.0.30", gpu="Orin", sm="87",
                      source_onnx="head.s8s8.onnx", source_sha256="ab" * 32,
                      profiles={"features": [[1, 64, 512], [1, 64, 512], [8, 64, 512]]})


def test_versions_and_names() -> None:
    assert trt_major_minor("10.3.0.30") == "10.3" and trt_major_minor("8.6") == "8.6"
    assert sm_string((8, 7)) == "87"
    name = engine_name("head", "int8", "10.3.0.30", "87")
    assert name == "head.int8.trt10.3.sm87.engine"
    assert parse_engine_name(name) == {"model": "head", "precision": "int8", "trt": "10.3", "sm": "87"}
    assert parse_engine_name("head.onnx") is None
    with pytest.raises(ValueError, match="TensorRT version"):
        trt_major_minor("ten")
    with pytest.raises(ValueError, match="engine name"):
        engine_name("head.v2", "int8", "10.3", "87")
    with pytest.raises(ValueError, match="precision"):
        EngineHeader(**{**HEADER.__dict__, "precision": "int4"})


def test_header_round_trip(tmp_path: Path) -> None:
    plan = bytes(range(256)) * 4
    path = write_engine(tmp_path / engine_name("head", "int8", "10.3.0", "87"), HEADER, plan)
    assert path.read_bytes().startswith(MAGIC)
    header, body = read_engine(path)
    assert body == plan
    assert header.profiles == HEADER.profiles and header.tensorrt == "10.3.0.30" and len(header.engine_sha256) == 64
    assert find_engine(tmp_path, "head", "10.3.1", "87") == path  # patch versions are compatible
    assert find_engine(tmp_path, "head", "10.4.0", "87") is None
    assert find_engine(tmp_path, "clip_visual", "10.3.0", "87") is None


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a CPL-VAD engine file.*make engine"):
        read_engine(bare)
    path = write_engine(tmp_path / "h.engine", HEADER, b"engine-bytes")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="do not match the header's sha256"):
        read_engine(path)
    with pytest.raises(FileNotFoundError, match="make engine"):
        read_engine(tmp_path / "missing.engine")
    truncated = tmp_path / "t.engine"
    truncated.write_bytes(MAGIC + (10_000).to_bytes(4, "little") + b"{}")
    with pytest.raises(ValueError, match="truncated header"):
        read_engine(truncated)


def test_check_header_names_every_mismatch() -> None:
    check_header(HEADER, tensorrt="10.3.0", sm="87", source_sha256="ab" * 32)  # same TensorRT minor, GPU, source
    with pytest.raises(EngineMismatch) as err:
        check_header(HEADER, tensorrt="8.6.2", sm="72", source_sha256="cd" * 32, where="head.engine")
    text = str(err.value)
    assert "TensorRT 10.3.0.30, this device has 8.6.2" in text and "sm87 (Orin), this GPU is sm72" in text
    assert "another head.s8s8.onnx" in text and "make engine" in text


@pytest.mark.trt
def test_backend_runs_an_engine(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("cuda") is None:
        pytest.skip("TensorRT / cuda-python not installed (Jetson only)")
    import onnx
    from onnx import TensorProto, helper

    from calibration.engine import BuildPlan, build_engine

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    path = build_engine(BuildPlan("head", "fp32", tmp_path / "m.onnx", "test"),
                        {"x": ((1, 4), (2, 4), (8, 4))}, tmp_path)
    backend = open_backend(str(path))
    x = np.array([[-1, 2, -3, 4]] * 3, np.float32)
    assert np.array_equal(backend.run({"x": x})["y"], np.maximum(x, 0))


def test_the_engines_a_bundle_would_run_are_checked_up_front(tmp_path: Path) -> None:
    """What ``--backend tensorrt --validate-config`` checks after TensorRT itself: an engine per model, intact,
    built for this TensorRT and GPU from the bundle's own ONNX file."""
    files = {"clip_visual.onnx": "cc" * 32, "head.s8s8.onnx": "ab" * 32}
    clip = EngineHeader(**{**HEADER.__dict__, "model": "clip_visual", "precision": "fp16",
                           "source_onnx": "clip_visual.onnx", "source_sha256": "cc" * 32})
    with pytest.raises(FileNotFoundError, match="no TensorRT engine for clip_visual .*make engine"):
        engines_for(tmp_path, files, "10.3.0", "87")
    write_engine(tmp_path / engine_name("clip_visual", "fp16", "10.3.0", "87"), clip, b"clip-plan")
    head = write_engine(tmp_path / engine_name("head", "int8", "10.3.0", "87"), HEADER, b"head-plan")
    assert engines_for(tmp_path, files, "10.3.0", "87") == {
        "clip_visual": tmp_path / "clip_visual.fp16.trt10.3.sm87.engine", "head": head}
    with pytest.raises(FileNotFoundError, match="TensorRT 10.4, GPU sm87"):  # built for another TensorRT
        engines_for(tmp_path, files, "10.4.0", "87")
    with pytest.raises(EngineMismatch, match="built from another head.s8s8.onnx"):  # the bundle was re-exported
        engines_for(tmp_path, {**files, "head.s8s8.onnx": "ef" * 32}, "10.3.0", "87")
    with pytest.raises(EngineMismatch, match="does not list"):
        engines_for(tmp_path, {"clip_visual.onnx": "cc" * 32}, "10.3.0", "87")
    head.write_bytes(head.read_bytes()[:-1] + b"X")  # a corrupt copy
    with pytest.raises(ValueError, match="do not match the header's sha256"):
        engines_for(tmp_path, files, "10.3.0", "87")
