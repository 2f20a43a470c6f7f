"""Explicit INT8 quantization: Q/DQ ONNX models with ONNX Runtime's ``quantize_static``.

Only the matrix products (MatMul, Gemm, Conv) get quantize/dequantize pairs; LayerNormalization, Softmax, GELU
(Erf / Gelu), Sigmoid and each output's last projection stay float. Two flavours from the same calibration data:

  * ``s8s8``: int8 symmetric activations and weights, Q/DQ on the inputs of the matrix products only (the
    placement TensorRT expects), what TensorRT builds its INT8 engines from;
  * ``u8s8``: uint8 activations, int8 weights, outputs quantized too (ONNX Runtime then fuses QLinearMatMul),
    the fast path of ONNX Runtime on CPU.

Weights are quantized per output channel. Calibration methods: ``minmax``, ``entropy``, ``percentile``.
(torch's dynamo exports break ``quant_pre_process``; ``quantize_static`` takes them as they are.)
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

log = logging.getLogger(__name__)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
FLAVOURS = ("s8s8", "u8s8")
QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")
FLOAT_OPS = ("LayerNormalization", "Softmax", "Erf", "Gelu", "Sigmoid")
PROJECTIONS = ("MatMul", "Gemm", "Conv")


class FeedReader(CalibrationDataReader):
    """A calibration reader over prepared feed dicts (one per calibration batch); restartable."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        if not feeds:
            raise ValueError("calibration needs at least one batch of inputs")
        self._feeds = [dict(f) for f in feeds]
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


def batched_feeds(arrays: Mapping[str, np.ndarray], batch: int, constants: Mapping[str, np.ndarray] | None = None
                  ) -> list[dict[str, np.ndarray]]:
    """Split arrays [N, ...] into feed dicts of ``batch`` rows (the last one may be smaller); add constants."""
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"calibration arrays differ in length: {sizes}")
    n = next(iter(sizes.values()))
    return [{**{k: a[s:s + batch] for k, a in arrays.items()}, **(constants or {})} for s in range(0, n, batch)]


def last_projections(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that make each graph output's last projection: walking back from every output, the
    first MatMul / Gemm / Conv on each path (past elementwise and reshaping nodes)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in PROJECTIONS:
            found.append(node.name)
            continue
        stack.extend(node.input)
    return sorted(found)


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes kept in float: normalisation, softmax, GELU, sigmoid and the last projections."""
    names = [n.name for n in model.graph.node if n.op_type in FLOAT_OPS]
    return sorted(set(names) | set(last_projections(model)))


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (exclusion works by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
    return model


def quantize(src: str | Path, dst: str | Path, reader: FeedReader, *, flavour: str, method: str = "minmax",
             per_channel: bool = True, keep_float: list[str] | None = None) -> dict:
    """Write the Q/DQ model ``dst`` from float ``src``; returns what was done (for the manifest).
    ``keep_float``: names of the nodes left in float (default :func:`float_nodes`)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour {flavour!r}; expected one of {FLAVOURS}")
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}; expected one of {sorted(METHODS)}")
    model = _named(onnx.load(str(src)))
    excluded = float_nodes(model) if keep_float is None else keep_float
    symmetric = flavour == "s8s8"
    extra: dict = {"ActivationSymmetric": symmetric, "WeightSymmetric": True}
    if symmetric:  # TensorRT placement: Q/DQ on the inputs of matrix products only, their outputs stay float
        extra["OpTypesToExcludeOutputQuantization"] = list(QUANTIZED_OPS)
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    reader.rewind()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs every bias copy and shape-inference note on the root logger
    try:
        _quantize_static(model, dst, reader, symmetric=symmetric, method=method, per_channel=per_channel,
                         excluded=excluded, extra=extra)
    finally:
        root.setLevel(level)
    quantized = sum(1 for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name not in excluded)
    log.info("%s -> %s (%s, %s): %d matrix products in int8, %d nodes kept float", Path(src).name, Path(dst).name,
             flavour, method, quantized, len(excluded))
    return {"flavour": flavour, "method": method, "per_channel": per_channel, "quantized_nodes": quantized,
            "float_nodes": len(excluded)}


def _quantize_static(model: onnx.ModelProto, dst: str | Path, reader: FeedReader, *, symmetric: bool, method: str,
                     per_channel: bool, excluded: list[str], extra: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="cplvad-quant-") as tmp:
        named = Path(tmp) / "named.onnx"  # calibration writes an augmented copy next to its input
        onnx.save(model, str(named))
        quantize_static(str(named), str(dst), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=METHODS[method],
                        extra_options=extra)
