"""Inference backends: one small interface over ONNX Runtime (any machine), OpenVINO (x86 CPUs) and TensorRT (Jetson).

A backend runs one model: named float/int arrays in, named arrays out. Dynamic axes appear in the input
specs as names (``"batch"``) or ``None``; fixed axes as integers, and :func:`check_feeds` enforces them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


class TensorSpec(NamedTuple):
    name: str
    shape: tuple[int | str | None, ...]  # int = fixed, str / None = dynamic
    dtype: np.dtype

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {np.dtype(self.dtype).name}"


@runtime_checkable
class InferenceBackend(Protocol):
    """What the edge runtime needs from an inference engine."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def check_feeds(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray], *, model: str) -> None:
    """Raise a ValueError naming the input when ``feeds`` do not match ``specs`` (names, rank, fixed dims, dtype)."""
    expected = {s.name for s in specs}
    missing, extra = sorted(expected - set(feeds)), sorted(set(feeds) - expected)
    if missing or extra:
        raise ValueError(f"{model}: inputs {sorted(feeds)} given, expected {sorted(expected)}"
                         + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else ""))
    for spec in specs:
        value = feeds[spec.name]
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{model}: input {spec.name!r} must be a numpy array, got {type(value).__name__}")
        fixed_ok = len(value.shape) == len(spec.shape) and all(
            not isinstance(d, int) or d == n for d, n in zip(spec.shape, value.shape))
        if not fixed_ok or value.dtype != spec.dtype:
            raise ValueError(f"{model}: input expected {spec.describe()}, "
                             f"got {list(value.shape)} {value.dtype.name}")


BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


def resolve_kind(kind: str) -> str:
    """``auto`` -> the fastest CPU backend installed here: ``openvino`` where it is importable, else
    ``onnxruntime``; other kinds as given (ValueError for unknown ones)."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend kind {kind!r}; expected one of {BACKENDS}")
    if kind != "auto":
        return kind
    from edge.backends.openvino import available

    return "openvino" if available() else "onnxruntime"


def open_backend(path: str, *, kind: str | None = None, **options: object) -> InferenceBackend:
    """A backend for a model file: ``onnxruntime`` for ``.onnx`` files, ``tensorrt`` for ``.engine`` files;
    ``kind="openvino"`` (or ``"auto"``, see :func:`resolve_kind`) for OpenVINO.

    ``options`` go to the backend's constructor (e.g. ``providers``, ``threads`` for ONNX Runtime; ``precision``,
    ``threads``, ``cache_dir`` for OpenVINO).
    """
    kind = resolve_kind(kind) if kind else ("tensorrt" if str(path).endswith((".engine", ".plan")) else "onnxruntime")
    if kind == "openvino":
        from edge.backends.openvino import OpenVINOBackend

        return OpenVINOBackend(path, **options)  # type: ignore[arg-type]
    if kind == "onnxruntime":
        from edge.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)  # type: ignore[arg-type]
    if kind == "tensorrt":
        try:
            from edge.backends.tensorrt import TensorRTBackend  # type: ignore[import-not-found]
        except ImportError as err:
            raise RuntimeError(f"TensorRT backend unavailable for {path}: {err}; "
                               f"use an .onnx model with ONNX Runtime instead") from err
        return TensorRTBackend(path, **options)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {BACKENDS}")


def cosine_rows(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise cosine of [N, ...] arrays (each row flattened) -> [N]: how two runtimes' outputs agree."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"cosine of arrays with shapes {a.shape} and {b.shape}")
    num = (a * b).sum(1)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return num / np.maximum(den, eps)
