"""edge.backends.openvino: precision per CPU, the tiny bundle's models against ONNX Runtime, the compile cache,
the INT8 Q/DQ model, and the runtime's backend selection (``openvino``, ``auto``)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge.backends import BACKENDS, open_backend, resolve_kind
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.backends.openvino import available, choose_precision, cpu_flags, cpu_model, has_native_bf16
from edge.bundle import load_bundle
from edge.config import RuntimeConfig
from edge.pipeline import model_precisions, open_models
from tests.test_pipeline import tiny_bundle  # noqa: F401  (the cached tiny bundle fixture)

needs_openvino = pytest.mark.skipif(not available(), reason="openvino is not installed "
                                    "(pip install 'cplvad-edge[openvino]')")

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_int8
"""


def test_precision_follows_the_cpu_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    flags = cpu_flags(info)
    assert {"avx2", "amx_bf16", "avx512_bf16"} <= flags and cpu_model(info) == "Intel(R) Xeon(R) Platinum 8480+"
    assert choose_precision("auto", flags) == "bf16"
    assert choose_precision("auto", {"avx512_bf16"}) == "bf16" and has_native_bf16({"amx_bf16"})
    assert choose_precision("auto", {"avx", "avx2", "fma"}) == "f32"  # AVX2 only (AMD EPYC before Zen 4)
    assert choose_precision("f32", flags) == "f32" and choose_precision("bf16", set()) == "bf16"  # overrides
    with pytest.raises(ValueError, match="expected one of"):
        choose_precision("fp16", flags)
    assert cpu_flags(tmp_path / "absent") == set() and cpu_model(tmp_path / "absent") == "unknown"


def test_auto_resolves_to_an_installed_backend() -> None:
    assert resolve_kind("auto") == ("openvino" if available() else "onnxruntime")
    assert resolve_kind("tensorrt") == "tensorrt" and "openvino" in BACKENDS
    with pytest.raises(ValueError, match="unknown backend kind 'tflite'"):
        resolve_kind("tflite")


def _feeds(backend: OnnxRuntimeBackend, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in backend.inputs:
        shape = [d if isinstance(d, int) else (3 if spec.name == "text" else batch) for d in spec.shape]
        feeds[spec.name] = (rng.random(shape) < 0.8) if spec.dtype == np.bool_ else \
            rng.normal(size=shape).astype(spec.dtype)
    return feeds


@needs_openvino
@pytest.mark.parametrize("model", ["clip_visual", "head"])
def test_tiny_models_agree_with_onnxruntime(tiny_bundle: Path, model: str, tmp_path: Path) -> None:  # noqa: F811
    path = load_bundle(tiny_bundle).file(model)
    ref = OnnxRuntimeBackend(path, threads=1)
    ov = open_backend(str(path), kind="openvino", precision="f32", threads=1, cache_dir=tmp_path)
    assert [s.name for s in ov.inputs] == [s.name for s in ref.inputs]  # ONNX names, not the compiled graph's
    assert [s.name for s in ov.outputs] == [s.name for s in ref.outputs]
    for batch in (1, 3):
        feeds = _feeds(ref, batch, seed=batch)
        a, b = ref.run(feeds), ov.run(feeds)
        for name in a:
            assert a[name].shape == b[name].shape
            np.testing.assert_allclose(b[name], a[name], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="expected"):
        ov.run({})


@needs_openvino
def test_bf16_runs_close_to_f32_and_compilation_is_cached(tiny_bundle: Path, tmp_path: Path,  # noqa: F811
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """bf16 is close to f32; where this OpenVINO build computes NaN in bf16 on this CPU, the backend says so and
    runs in f32 from then on."""
    from edge.backends.openvino import OpenVINOBackend

    path = load_bundle(tiny_bundle).file("clip_visual")
    feeds = {"pixels": np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)}
    f32 = OpenVINOBackend(path, precision="f32", threads=1, cache_dir=tmp_path / "c").run(feeds)["image_embeds"]
    backend = OpenVINOBackend(path, precision="bf16", threads=1, cache_dir=tmp_path / "c")
    with caplog.at_level(logging.WARNING, logger="edge.backends.openvino"):
        bf16 = backend.run(feeds)["image_embeds"]
    assert np.isfinite(bf16).all()
    assert (backend.precision == "f32") == ("compiled again in f32" in caplog.text)
    cos = (f32 * bf16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert np.all(cos > 0.98), cos  # emulated bf16 on CPUs without it: still bf16 rounding
    assert any((tmp_path / "c").iterdir()), "no compiled model in the cache folder"
    t0 = time.perf_counter()
    again = OpenVINOBackend(path, precision="f32", threads=1, cache_dir=tmp_path / "c")
    assert time.perf_counter() - t0 < 30
    np.testing.assert_array_equal(again.run(feeds)["image_embeds"], f32)  # the cached blob computes the same


def test_missing_model_and_bad_threads(tmp_path: Path) -> None:
    from edge.backends.openvino import OpenVINOBackend

    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OpenVINOBackend(tmp_path / "missing.onnx")
    (tmp_path / "m.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="threads"):
        OpenVINOBackend(tmp_path / "m.onnx", threads=0)


@needs_openvino
def test_bad_onnx_file_is_named(tmp_path: Path) -> None:
    from edge.backends.openvino import OpenVINOBackend

    (tmp_path / "m.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="OpenVINO could not compile .*m.onnx"):
        OpenVINOBackend(tmp_path / "m.onnx", cache_dir=tmp_path / "c")


@needs_openvino
def test_runtime_opens_both_models_on_openvino(tiny_bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    bundle = load_bundle(tiny_bundle)
    runtime = RuntimeConfig(backend="openvino", threads=1, openvino_precision="f32", openvino_cache=tmp_path)
    models = open_models(bundle, runtime)
    assert type(models.clip).__name__ == type(models.head).__name__ == "OpenVINOBackend"
    assert model_precisions(bundle, runtime.model_copy(update={"precision": "int8"})) == \
        {"clip_visual": "fp32", "head": "fp32"}  # not calibrated: float
    ref = open_models(bundle, RuntimeConfig(threads=1))
    pixels = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(models.clip.run({"pixels": pixels})["image_embeds"],
                               ref.clip.run({"pixels": pixels})["image_embeds"], rtol=1e-3, atol=1e-4)
    auto = open_models(bundle, RuntimeConfig(backend="auto", threads=1, openvino_cache=tmp_path))
    assert type(auto.clip).__name__ == "OpenVINOBackend"


def test_missing_openvino_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from edge.backends.openvino import OpenVINOBackend

    (tmp_path / "m.onnx").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError, as where it is absent
    assert not available() and resolve_kind("auto") == "onnxruntime"
    with pytest.raises(ValueError, match=r"OpenVINO is not installed .*pip install 'cplvad-edge\[openvino\]'"):
        OpenVINOBackend(tmp_path / "m.onnx")


def test_bench_times_interleaved_and_tabulates() -> None:
    from bench.encoder_runtimes import markdown, time_encoders

    calls: list[str] = []

    def encoder(name: str, seconds: float):
        def encode(x: np.ndarray) -> np.ndarray:
            calls.append(name)
            time.sleep(seconds * len(x))
            return x[:, :1]
        return encode

    speeds = time_encoders([encoder("a", 0.002), encoder("b", 0.008)], np.zeros((2, 3)), (1, 4), rounds=3)
    assert calls[:2] == ["a", "b"] and calls[2:8] == ["a", "b"] * 3  # warm-up, then one call each per round
    assert speeds[0][1] > 2 * speeds[1][1] and speeds[0][4] > 2 * speeds[1][4]  # images/s: 4x faster, with slack
    result = {"clip": "random", "cpu": "Test CPU", "threads": 2, "cores": 2, "load_average_1min": 0.5,
              "bf16": "no bf16", "rows": [
                  {"runtime": "onnxruntime", "precision": "fp32", "images_per_s": {"1": 2.0, "8": 4.0},
                   "min_cosine": 1.0},
                  {"runtime": "openvino", "precision": "int8 (s8s8)", "images_per_s": {"1": 5.0, "8": 10.0},
                   "min_cosine": 0.9991},
                  {"runtime": "openvino", "precision": "bf16", "skipped": "not timed: no AMX / AVX512-BF16"}]}
    table = markdown(result)
    assert "real-size ViT-B/16, random weights) on Test CPU" in table
    assert "| openvino | int8 (s8s8) | 5.00 | 10.00 | 2.50 | 0.9991 |" in table
    assert "| openvino | bf16 | - | - | - | not timed: no AMX / AVX512-BF16 |" in table


def test_reported_precision_is_what_openvino_computes() -> None:
    from edge.pipeline import compute_precision

    bf16 = RuntimeConfig(backend="openvino", openvino_precision="bf16")
    assert compute_precision("fp32", "openvino", bf16) == "bf16"  # the float model runs in bf16
    assert compute_precision("int8", "openvino", bf16) == "int8"
    assert compute_precision("fp32", "openvino", bf16.model_copy(update={"openvino_precision": "f32"})) == "fp32"
    assert compute_precision("fp32", "onnxruntime", bf16) == "fp32"  # the hint is OpenVINO's only


def test_isa_summary_names_what_sets_speed() -> None:
    from edge.backends.openvino import isa_summary

    assert isa_summary({"avx2", "fma"}) == "AVX2, no AMX"
    assert isa_summary({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}) == "AVX-512, AVX512-BF16, AVX512-VNNI, no AMX"
    assert isa_summary({"amx_bf16", "amx_int8", "avx512f", "avx2"}) == "AMX-INT8, AMX-BF16, AVX-512"
    assert isa_summary(set()) == "CPU flags unknown"
