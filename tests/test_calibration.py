"""INT8 calibration: sampling math, the frame set, real quantize_static runs and the gate on a tiny bundle."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calibration.calibrate import DEFAULT_CONFIG, CalibrateConfig, calibrate, flavour_file, gate_span, main
from calibration.dataset import (FrameSet, build_frame_set, even_indices, expand_sources, holdout_mask, read_source,
                                 sample_windows, split_quota)
from calibration.gate import GateBudget, cosine_summary, judge
from edge.backends import cosine_rows
from calibration.quantize import FeedReader, batched_feeds, float_nodes, last_projections, quantize
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.bundle import load_bundle
from edge.ringbuffer import ring_windows
from edge.configfile import load_config



# ------------------------------------------------------------------------------------------- pure pieces


def test_even_indices_spread_with_seeded_phase() -> None:
    idx = even_indices(100, 4, seed=3)
    assert len(idx) == 4 and np.all(np.diff(idx) == 25)  # step 100 / 4
    assert 0 <= idx[0] < 25
    assert np.array_equal(idx, even_indices(100, 4, seed=3))
    assert not np.array_equal(even_indices(1000, 4, seed=1), even_indices(1000, 4, seed=2))
    assert np.array_equal(even_indices(3, 10), [0, 1, 2])
    assert len(even_indices(0, 5)) == 0


def test_split_quota_and_holdout() -> None:
    assert split_quota(10, 3) == [4, 3, 3]
    assert split_quota(2, 4) == [1, 1, 0, 0]
    mask = holdout_mask(10, 0.2, seed=0)
    assert mask.sum() == 2 and np.array_equal(mask, holdout_mask(10, 0.2, seed=0))
    assert holdout_mask(2, 0.01).sum() == 1  # at least one held out, at least one kept
    with pytest.raises(ValueError, match="holdout fraction"):
        holdout_mask(10, 1.0)


def test_ring_windows_fill_then_slide() -> None:
    feats = np.arange(1, 5, dtype=np.float32)[:, None]  # 4 snippets, D = 1: values 1..4
    x, mask = ring_windows(feats, window=3)
    assert x[:, :, 0].tolist() == [[1, 0, 0], [1, 2, 0], [1, 2, 3], [2, 3, 4]]
    assert mask.tolist() == [[True, False, False], [True, True, False], [True, True, True], [True, True, True]]
    xs, ms = sample_windows([feats, feats[:2]], 3, count=6)
    assert xs.shape == (6, 3, 1) and ms.shape == (6, 3)


def test_cosine_and_judge() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0]])
    assert np.allclose(cosine_rows(a, b), [0.0, 1.0])
    summary = cosine_summary(np.array([1.0, 0.5]))
    assert summary["cosine_mean"] == pytest.approx(0.75) and summary["cosine_p1"] == pytest.approx(0.505)
    budget = GateBudget(min_cosine=0.98, max_ap_drop=0.01)
    assert judge({"cosine_p1": 0.99, "ap_drop": 0.005}, budget).passed
    fail = judge({"cosine_p1": 0.97, "ap_drop": 0.02}, budget)
    assert not fail.passed and "cosine p1 0.9700 < 0.98" in fail.reason and "AP drop 2.00 points" in fail.reason


def test_gate_span_centres_on_the_anomaly() -> None:
    gt = np.zeros(16 * 10)
    assert gate_span(gt, 20) == (0, 10)  # short video: all of it
    assert gate_span(gt, 4) == (0, 4)  # normal video: from the start
    gt[16 * 7:16 * 9] = 1  # snippets 7, 8
    assert gate_span(gt, 4) == (5, 9)  # centre 7 -> 5..8
    gt[:] = 0
    gt[16 * 9:] = 1
    assert gate_span(gt, 4) == (6, 10)  # clamped to the end


def test_batched_feeds_and_reader_rewind() -> None:
    feeds = batched_feeds({"x": np.zeros((5, 2))}, 2, {"t": np.ones(3)})
    assert [len(f["x"]) for f in feeds] == [2, 2, 1] and all("t" in f for f in feeds)
    reader = FeedReader(feeds)
    assert sum(1 for _ in iter(reader.get_next, None)) == 3
    reader.rewind()
    assert reader.get_next() is not None
    with pytest.raises(ValueError, match="differ in length"):
        batched_feeds({"a": np.zeros(2), "b": np.zeros(3)}, 1)


def _graph_model() -> onnx.ModelProto:
    """x -> MatMul(w1) -> LayerNorm -> Gelu-ish Erf -> MatMul(w2) -> Sigmoid -> y."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [8, 8], rng.normal(size=64).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [8, 4], rng.normal(size=32).astype(np.float32))
    scale = helper.make_tensor("s", TensorProto.FLOAT, [8], np.ones(8, np.float32))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("LayerNormalization", ["h", "s"], ["n"], name="ln", axis=-1),
             helper.make_node("Erf", ["n"], ["e"], name="erf"),
             helper.make_node("MatMul", ["e", "w2"], ["p"], name="proj"),
             helper.make_node("Sigmoid", ["p"], ["y"], name="sig")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])], [w1, w2, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_float_nodes_keep_norm_gelu_and_last_projection(tmp_path: Path) -> None:
    model = _graph_model()
    assert last_projections(model) == ["proj"]
    assert float_nodes(model) == ["erf", "ln", "proj", "sig"]
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    x = np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32)
    info = quantize(src, tmp_path / "m.s8s8.onnx", FeedReader(batched_feeds({"x": x}, 8)), flavour="s8s8")
    assert info["quantized_nodes"] == 1
    q = onnx.load(str(tmp_path / "m.s8s8.onnx"))
    quantized_inputs = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    consumers = {n.name: n for n in q.graph.node}
    assert any(i in quantized_inputs for i in consumers["mm1"].input)
    assert not any(i in quantized_inputs for i in consumers["proj"].input)
    assert not any(i in quantized_inputs for i in consumers["ln"].input)
    zero_points = [init for init in q.graph.initializer if init.name.endswith("zero_point")]
    assert zero_points and all(z.data_type == TensorProto.INT8 for z in zero_points)  # symmetric s8
    ref, out = (OnnxRuntimeBackend(p).run({"x": x[:4]})["y"] for p in (src, tmp_path / "m.s8s8.onnx"))
    assert np.abs(ref - out).max() < 0.05
    with pytest.raises(ValueError, match="flavour"):
        quantize(src, tmp_path / "bad.onnx", FeedReader(batched_feeds({"x": x}, 8)), flavour="u8u8")


# ------------------------------------------------------------------------------------------- frames


def test_read_source_is_deterministic(scene_video: Path) -> None:
    a = read_source(str(scene_video), 5, seed=0)
    b = read_source(str(scene_video), 5, seed=0)
    assert a.shape == (5, 224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and a.std() > 5  # real pixels, same frames


def test_frame_set_round_trip_and_errors(scene_video: Path, tmp_path: Path) -> None:
    frames = build_frame_set([str(scene_video), str(scene_video)], 7, min_frames=2)
    assert len(frames) == 7 and frames.source_index.tolist() == [0, 0, 0, 0, 1, 1, 1]
    loaded = FrameSet.load(frames.save(tmp_path / "f.npz"))
    assert np.array_equal(loaded.crops, frames.crops) and loaded.sources == frames.sources
    with pytest.raises(ValueError, match="at least 8"):
        build_frame_set([str(scene_video)], 3, min_frames=8)
    with pytest.raises(ValueError, match="no videos"):
        expand_sources([str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        expand_sources([str(tmp_path / "missing.mp4")])
    with pytest.raises(ValueError, match="no --source"):
        build_frame_set([], 5)


# ------------------------------------------------------------------------------------------- end to end


def _labelled_data(folder: Path, window: int) -> Path:
    """A release-layout test list: 3 anomalous + 3 normal videos with frame ground truth."""
    rng = np.random.default_rng(0)
    (folder / "features").mkdir(parents=True)
    rows, gt, segments, labels = ["path,label"], [], [], []
    for i in range(6):
        anomalous = i < 3
        name = f"Abuse{i:03d}_x264" if anomalous else f"Normal_Videos_{i:03d}_x264"
        n = window + 6 + 3 * i
        feats = rng.normal(0, 0.5, (n, 512)).astype(np.float32)
        truth = np.zeros(16 * n, np.float32)
        if anomalous:
            feats[n // 2:] += 1.0
            truth[16 * (n // 2):] = 1
            segments.append([[16 * (n // 2), 16 * n]])
            labels.append(["Abuse"])
        else:
            segments.append([[0, 16 * n]])
            labels.append(["A"])
        np.save(folder / "features" / f"{name}__0.npy", feats)
        rows.append(f"features/{name}__0.npy,{'Abuse' if anomalous else 'Normal'}")
        gt.append(truth)
    (folder / "test.csv").write_text("\n".join(rows) + "\n")
    np.save(folder / "gt_frames.npy", np.concatenate(gt))
    for file, items in (("gt_segment.npy", segments), ("gt_label.npy", labels)):
        arr = np.empty(len(items), object)
        arr[:] = items
        np.save(folder / file, arr, allow_pickle=True)
    return folder


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.export.bundle import build_random_bundle

    from edge.smoother import SmootherParams
    from train.models.student import StudentConfig

    return build_random_bundle(tmp_path_factory.mktemp("bundle") / "b", clip="tiny",
                               student=StudentConfig(d_model=32, num_heads=2, num_levels=2, window=16),
                               classes=("normal", "abuse", "fighting"), encode_every=4, smoother=SmootherParams())


@pytest.fixture(scope="module")
def calibrated(tiny_bundle: Path, scene_video: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Path, list[dict]]:
    bundle = tmp_path_factory.mktemp("calibrated") / "b"
    shutil.copytree(tiny_bundle, bundle)
    data = _labelled_data(tmp_path_factory.mktemp("data"), window=16)
    cfg = CalibrateConfig(frames=40, head_windows=48, gate_videos=6, speed_rounds=2, threads=1)
    rows = calibrate(bundle, [str(scene_video)], cfg, data=data)
    return bundle, rows


def test_calibrate_writes_gated_int8_models(calibrated: tuple[Path, list[dict]]) -> None:
    bundle_dir, rows = calibrated
    assert {(r["model"], r["flavour"]) for r in rows} == {(m, f) for m in ("clip_visual", "head")
                                                          for f in ("s8s8", "u8s8")}
    bundle = load_bundle(bundle_dir)  # sha256 of the new files recorded, the loader accepts the manifest
    for model in ("clip_visual", "head"):
        section = bundle.manifest.models[model].int8
        assert section is not None and section["method"] == "minmax" and section["frames"] == 40
        # 40 frames, and 40 head windows (48 asked, but one frame = one snippet: 40 windows exist)
        assert section["calibration_samples"] + section["heldout_samples"] == 40
        for flavour, entry in section["flavours"].items():
            assert entry["file"] == flavour_file(bundle.manifest.models[model].file, flavour)
            assert entry["file"] in bundle.manifest.files
            assert 0.9 < entry["gate"]["cosine_p1"] <= entry["gate"]["cosine_mean"] <= 1.0 + 1e-9
            assert entry["passed"] == (entry["gate"]["cosine_p1"] >= 0.98 and entry["gate"].get("ap_drop", 0) <= 0.01)
    head = {r["flavour"]: r for r in rows if r["model"] == "head"}
    assert 0 <= head["s8s8"]["auc_float"] <= 1 and head["s8s8"]["auc_float"] == head["u8s8"]["auc_float"]
    assert head["s8s8"]["ap_drop"] == pytest.approx(head["s8s8"]["ap_float"] - head["s8s8"]["ap_int8"])
    q = onnx.load(str(bundle_dir / "clip_visual.s8s8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "LayerNormalization"} <= ops
    assert all(r["ms"]["fp32"][1] > 0 and r["ms"]["int8"][8] > 0 for r in rows)


def test_calibrate_reuses_saved_frames_and_gate_can_fail(calibrated: tuple[Path, list[dict]], tmp_path: Path) -> None:
    src, _ = calibrated
    bundle = tmp_path / "b"
    shutil.copytree(src, bundle)
    cfg = CalibrateConfig(frames=40, head_windows=24, gate_videos=6, speed_rounds=1, threads=1,
                          budget=GateBudget(min_cosine=1.0, max_ap_drop=0.0))
    rows = calibrate(bundle, [], cfg, data=_labelled_data(tmp_path / "d", 16))  # frames from calibration/frames.npz
    assert all(not r["passed"] and "cosine p1" in r["reason"] for r in rows)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["models"]["head"]["int8"]["flavours"]["s8s8"]["passed"] is False
    (bundle / "calibration" / "frames.npz").unlink()
    with pytest.raises(ValueError, match="no --source"):
        calibrate(bundle, [], cfg)


def test_config_file_and_cli_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(CalibrateConfig, root / DEFAULT_CONFIG, ["budget.min_cosine=0.99", "method=entropy"])
    assert cfg.frames >= 500 and cfg.budget.min_cosine == 0.99 and cfg.method == "entropy"
    assert main(["--bundle", str(tmp_path / "nothing"), "--config", str(root / DEFAULT_CONFIG)]) == 2
    assert "no manifest.json" in caplog.text


def test_edge_runs_the_int8_flavour_that_passed_its_gate(calibrated: tuple[Path, list[dict]]) -> None:
    from edge.config import RuntimeConfig
    from edge.pipeline import open_models

    bundle = load_bundle(calibrated[0])
    fp32 = open_models(bundle, RuntimeConfig(threads=1))
    int8 = open_models(bundle, RuntimeConfig(threads=1, precision="int8"))
    passed = bundle.manifest.models["head"].int8["flavours"]["u8s8"]["passed"]
    assert int8.info.precision == ("int8" if passed else "fp32") and fp32.info.precision == "fp32"
    window = np.random.default_rng(0).normal(size=(1, bundle.window, 512)).astype(np.float32)
    feeds = {"features": window, "mask": np.ones((1, bundle.window), bool), "text": fp32.text}
    a, b = fp32.head.run(feeds)["binary"], int8.head.run(feeds)["binary"]
    assert a.shape == b.shape and np.abs(a - b).max() < 0.1  # the gate let it through: close to float


def test_gate_measures_openvino_and_edge_runs_its_int8(calibrated: tuple[Path, list[dict]], tmp_path: Path) -> None:
    from edge.backends.openvino import available
    from edge.config import RuntimeConfig
    from edge.pipeline import model_precisions, open_models

    if not available():
        pytest.skip("openvino is not installed (pip install 'cplvad-edge[openvino]')")
    bundle = load_bundle(calibrated[0])
    for model in ("clip_visual", "head"):
        s8s8 = bundle.manifest.models[model].int8["flavours"]["s8s8"]
        ov = s8s8["openvino"]  # OpenVINO's own INT8 kernels, judged apart
        assert 0.9 < ov["gate"]["cosine_p1"] <= ov["gate"]["cosine_mean"] <= 1.0 + 1e-9
        assert ov["passed"] == (ov["gate"]["cosine_p1"] >= 0.98 and s8s8["gate"].get("ap_drop", 0) <= 0.01)
        assert ov["ms"]["fp32"]["8"] > 0 and ov["ms"]["int8"]["1"] > 0
        assert "openvino" not in bundle.manifest.models[model].int8["flavours"]["u8s8"]
    runtime = RuntimeConfig(backend="openvino", threads=1, precision="int8", openvino_precision="f32",
                            openvino_cache=tmp_path)
    expected = {m: "int8" if bundle.manifest.models[m].int8["flavours"]["s8s8"]["openvino"]["passed"] else "fp32"
                for m in ("clip_visual", "head")}
    assert model_precisions(bundle, runtime) == expected
    int8, fp32 = open_models(bundle, runtime), open_models(bundle, RuntimeConfig(threads=1))
    window = np.random.default_rng(0).normal(size=(1, bundle.window, 512)).astype(np.float32)
    feeds = {"features": window, "mask": np.ones((1, bundle.window), bool), "text": fp32.text}
    a, b = fp32.head.run(feeds)["binary"], int8.head.run(feeds)["binary"]
    assert a.shape == b.shape and np.abs(a - b).max() < 0.1


def test_auto_backend_keeps_the_int8_that_passed(calibrated: tuple[Path, list[dict]]) -> None:
    """`--backend auto --precision int8` runs OpenVINO only where its INT8 passed at least as often as ONNX
    Runtime's; otherwise ONNX Runtime, so auto never falls back to float when an INT8 flavour passed."""
    from edge.backends.openvino import available
    from edge.config import RuntimeConfig
    from edge.pipeline import backend_kind, model_precisions

    if not available():
        pytest.skip("openvino is not installed (pip install 'cplvad-edge[openvino]')")
    bundle = load_bundle(calibrated[0])
    runtime = RuntimeConfig(backend="auto", precision="int8")
    flavours = {m: bundle.manifest.models[m].int8["flavours"] for m in ("clip_visual", "head")}
    for f in flavours.values():  # as if OpenVINO's INT8 failed its gate and ONNX Runtime's passed
        f["s8s8"]["openvino"]["passed"], f["u8s8"]["passed"] = False, True
    assert backend_kind(bundle, runtime) == "onnxruntime"
    assert model_precisions(bundle, runtime) == {"clip_visual": "int8", "head": "int8"}
    for f in flavours.values():  # both passed: the faster runtime
        f["s8s8"]["openvino"]["passed"] = True
    assert backend_kind(bundle, runtime) == "openvino"
    assert backend_kind(bundle, runtime.model_copy(update={"precision": "fp32"})) == "openvino"
    assert backend_kind(bundle, runtime.model_copy(update={"backend": "onnxruntime"})) == "onnxruntime"
