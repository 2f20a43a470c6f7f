"""ONNX Runtime backend: CPU by default; CUDA or TensorRT execution providers where this build has them."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.backends import TensorSpec, check_feeds

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def resolve_providers(names: Sequence[str], available: Sequence[str] | None = None) -> list[str]:
    """Short names (``cpu``, ``cuda``, ``tensorrt``, ``auto``) -> ONNX Runtime provider names, in priority order.

    ``auto`` = TensorRT, then CUDA, where available, then CPU. CPU is always appended as the fallback.
    """
    available = list(ort.get_available_providers() if available is None else available)
    chosen: list[str] = []
    for name in names:
        if name == "auto":
            wanted = [PROVIDERS["tensorrt"], PROVIDERS["cuda"]]
            chosen += [p for p in wanted if p in available and p not in chosen]
            continue
        if name not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime provider {name!r}; expected some of {sorted(PROVIDERS)} or 'auto'")
        if PROVIDERS[name] not in available:
            raise ValueError(f"ONNX Runtime provider {name!r} ({PROVIDERS[name]}) is not in this onnxruntime build; "
                             f"available: {available}. Install onnxruntime-gpu for CUDA/TensorRT, or use 'cpu'")
        if PROVIDERS[name] not in chosen:
            chosen.append(PROVIDERS[name])
    if PROVIDERS["cpu"] not in chosen:
        chosen.append(PROVIDERS["cpu"])
    return chosen


def _spec(arg: ort.NodeArg) -> TensorSpec:
    dtype = _ORT_DTYPES.get(arg.type)
    if dtype is None:
        raise ValueError(f"model tensor {arg.name!r} has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(dtype))


class OnnxRuntimeBackend:
    """Runs one ONNX model with ONNX Runtime.

    ``providers``: short names in priority order (see :func:`resolve_providers`); ``threads``: intra-op threads
    (``None`` = ONNX Runtime's default, one per core).
    """

    def __init__(self, path: str | Path, *, providers: Sequence[str] = ("cpu",), threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        chosen = resolve_providers(providers)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"ONNX Runtime could not load {self.path}: {err}") from err
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        log.info("%s on %s: %s -> %s", self.path.name, self.session.get_providers()[0],
                 ", ".join(s.describe() for s in self.inputs), ", ".join(s.describe() for s in self.outputs))

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses, in priority order."""
        return list(self.session.get_providers())

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` (exporters record the model's contract there)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.inputs, feeds, model=self.path.name)
        values = self.session.run(None, dict(feeds))
        return {spec.name: value for spec, value in zip(self.outputs, values)}
