"""OpenVINO backend (x86 edge boxes): ONNX models compiled for the CPU, bf16 where the CPU computes it natively.

The float models' compute precision (``INFERENCE_PRECISION_HINT``) follows the CPU: ``bf16`` where it has AMX or
AVX512-BF16 (the ``amx_bf16`` / ``avx512_bf16`` flags of ``/proc/cpuinfo``), ``f32`` elsewhere (AVX2-only CPUs
such as AMD EPYC before Zen 4 would emulate bf16, slower than f32); ``precision=`` overrides it. The calibrated
Q/DQ INT8 models run as they are: OpenVINO folds the Q/DQ pairs into INT8 kernels (VNNI / AMX-INT8).

Compiled models are cached on disk (``CACHE_DIR``, keyed by OpenVINO on the file, its contents and the
properties), so a restart skips compilation. ``openvino`` is optional (``pip install 'cplvad-edge[openvino]'``)
and imported here only.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import TensorSpec, check_feeds

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "f32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INSTALL = "pip install 'cplvad-edge[openvino]' (or pip install openvino)"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cplvad/openvino`` (``~/.cache/cplvad/openvino``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cplvad" / "openvino"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor in ``cpuinfo``; empty where the file is absent (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


ISA_NAMES = (("amx_int8", "AMX-INT8"), ("amx_bf16", "AMX-BF16"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
             ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))


def isa_summary(flags: Iterable[str]) -> str:
    """The vector and matrix extensions that set inference speed, e.g. 'AVX-512, AVX512-BF16, AVX512-VNNI, no AMX'."""
    flags = set(flags)
    names = [name for flag, name in ISA_NAMES if flag in flags]
    if "AVX-512" in names and "AVX2" in names:
        names.remove("AVX2")  # implied
    if not any(n.startswith("AMX") for n in names):
        names.append("no AMX")
    return ", ".join(names) if flags else "CPU flags unknown"


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's ``model name`` from ``cpuinfo`` ('unknown' where absent)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return "unknown"


def has_native_bf16(flags: Iterable[str]) -> bool:
    """Whether these CPU flags include AMX-BF16 or AVX512-BF16."""
    return any(f in set(flags) for f in BF16_FLAGS)


def choose_precision(requested: str, flags: Iterable[str]) -> str:
    """``auto`` -> ``bf16`` where the CPU has native bf16, else ``f32``; ``f32`` / ``bf16`` stay as asked."""
    if requested not in PRECISIONS:
        raise ValueError(f"OpenVINO precision {requested!r}; expected one of {PRECISIONS}")
    if requested != "auto":
        return requested
    return "bf16" if has_native_bf16(flags) else "f32"


def available() -> bool:
    """Whether the ``openvino`` package is importable."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _spec(port: Any, name: str) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()))


def _port_names(core: Any, compiled: Any, path: Path) -> tuple[list[str], list[str]]:
    """The ONNX names of the compiled model's inputs and outputs. Compilation can merge a port's tensor with the
    next one (``features`` + ``div``); then the names are read from the model file itself (same port order)."""
    ports = [*compiled.inputs, *compiled.outputs]
    if any(len(p.get_names()) != 1 for p in ports):
        model = core.read_model(str(path))
        ports = [*model.inputs, *model.outputs]
    names = [p.get_any_name() for p in ports]
    return names[:len(compiled.inputs)], names[len(compiled.inputs):]


def _all_finite(arrays: Iterable[np.ndarray]) -> bool:
    """No NaN or inf in any float array (other dtypes count as finite)."""
    return all(not np.issubdtype(a.dtype, np.floating) or bool(np.isfinite(a).all()) for a in map(np.asarray, arrays))


class OpenVINOBackend:
    """Runs one ONNX model with OpenVINO on the CPU.

    ``precision``: float compute precision, ``auto`` (per CPU), ``f32`` or ``bf16``; it does not change an INT8
    Q/DQ model's quantized layers. ``threads``: inference threads (``None``: OpenVINO's default, one per core).
    ``cache_dir``: where compiled models are kept (``None``: :func:`default_cache_dir`).
    """

    def __init__(self, path: str | Path, *, precision: str = "auto", threads: int | None = None,
                 cache_dir: str | Path | None = None, device: str = "CPU") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} not found")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        try:
            import openvino as ov
            import openvino.properties as props
            import openvino.properties.hint as hints
        except ImportError as err:  # a setting this machine cannot honour: a ValueError, reported in one line
            raise ValueError(f"backend openvino: OpenVINO is not installed ({err}); {INSTALL}, or run with "
                             "--backend onnxruntime (or auto)") from None
        self.precision = choose_precision(precision, cpu_flags())
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._ov, self._device = ov, device
        self._config = {
            hints.performance_mode: hints.PerformanceMode.LATENCY,  # one request at a time, all threads on it
            props.cache_dir: str(self.cache_dir),
        }
        if threads is not None:
            self._config[props.inference_num_threads] = threads
        self._lock = threading.Lock()  # one infer request: one call at a time
        core = ov.Core()
        self._compile(core)
        in_names, out_names = _port_names(core, self.compiled, self.path)
        self.inputs = tuple(_spec(p, n) for p, n in zip(self.compiled.inputs, in_names))
        self.outputs = tuple(_spec(p, n) for p, n in zip(self.compiled.outputs, out_names))
        log.info("%s on OpenVINO %s (%s, %s threads): %s -> %s", self.path.name, device, self.precision,
                 threads or "all", ", ".join(s.describe() for s in self.inputs),
                 ", ".join(s.describe() for s in self.outputs))

    def _compile(self, core: Any) -> None:
        import openvino.properties.hint as hints

        ov = self._ov
        config = {**self._config,
                  hints.inference_precision: ov.Type.bf16 if self.precision == "bf16" else ov.Type.f32}
        try:
            self.compiled = core.compile_model(str(self.path), self._device, config)  # cache hits skip reading
        except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own for bad files
            raise ValueError(f"OpenVINO could not compile {self.path}: {err}") from err
        self._request = self.compiled.create_infer_request()

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._request.infer({i: feeds[s.name] for i, s in enumerate(self.inputs)})  # outputs copied
        return {spec.name: np.asarray(result[i]) for i, spec in enumerate(self.outputs)}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.inputs, feeds, model=self.path.name)
        with self._lock:
            out = self._infer(feeds)
            if self.precision == "bf16" and not _all_finite(out.values()) and _all_finite(feeds.values()):
                # some OpenVINO CPU builds compute NaN in bf16 on some CPUs (seen: 2026.4 on AMX, CLIP ViT-B/16)
                log.warning("%s: OpenVINO %s in bf16 gave non-finite outputs for finite inputs on %s; compiled again "
                            "in f32 (precision=f32 skips bf16)", self.path.name, self._ov.get_version(), cpu_model())
                self.precision = "f32"
                self._compile(self._ov.Core())
                out = self._infer(feeds)
            return out
