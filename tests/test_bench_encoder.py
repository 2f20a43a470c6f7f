"""The encoder benchmark's arithmetic: FLOPs of a ViT and the GEMM probe it measures peaks with."""
from pathlib import Path

import numpy as np

from bench.encoder_runtimes import gemm_gflops, gemm_model, vit_flops
from edge.backends.onnxruntime import OnnxRuntimeBackend


def test_vit_b16_flops_match_the_published_count() -> None:
    # ViT-B/16 at 224 px: 17.6 GMAC (the figure papers quote as "GFLOPs"), i.e. ~35 GFLOP at 2 per multiply-add
    assert 34.5e9 < vit_flops() < 35.5e9
    # doubling the layers doubles the layer part only; a bigger patch means fewer tokens and fewer FLOPs
    assert vit_flops(layers=24) < 2 * vit_flops() and vit_flops(patch=32) < vit_flops() / 3


def test_gemm_probe_computes_the_product_it_times(tmp_path: Path) -> None:
    shape = (8, 4, 6)
    backend = OnnxRuntimeBackend(gemm_model(tmp_path / "g.onnx", shape, seed=3), threads=1)
    x = np.arange(32, dtype=np.float32).reshape(8, 4)
    w = np.random.default_rng(3).normal(0, 0.02, (4, 6)).astype(np.float32)
    np.testing.assert_allclose(backend.run({"x": x})["y"], x @ w, rtol=1e-5, atol=1e-6)
    calls = []
    assert gemm_gflops(lambda a: calls.append(a.shape), rounds=3, shape=shape) > 0 and calls == [(8, 4)] * 4


def test_level_fusion_rules_by_hand() -> None:
    from bench.level_fusion import fusion_rules, markdown

    p = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])  # [L=3, N=2]
    rules = fusion_rules(3)
    np.testing.assert_allclose(rules["level 0 alone (stride 1)"](p), [0.9, 0.1])  # = fusion: finest
    np.testing.assert_allclose(rules["level 2 alone (stride 4)"](p), [0.1, 0.9])
    np.testing.assert_allclose(rules["fusion mean (the paper's)"](p), [0.5, 0.5], atol=1e-9)  # logits cancel
    weighted = rules["stride-weighted mean (2^-l)"](p)
    assert weighted[0] > 0.5 > weighted[1]  # the finest level weighs most
    table = markdown({"a": {r: {"auc": 1.0, "ap": 2.0} for r in rules}})
    assert "| fusion mean (the paper's) | 1.00 | 2.00 |" in table


def test_gemm_probe_is_quantized_for_the_int8_runtimes(tmp_path: Path) -> None:
    import onnx

    from bench.encoder_runtimes import gemm_models

    models = gemm_models(tmp_path)
    for flavour in ("s8s8", "u8s8"):
        ops = [n.op_type for n in onnx.load(str(models[flavour])).graph.node]
        assert "MatMul" in ops and ops.count("DequantizeLinear") >= 2, ops  # both operands through Q/DQ
