"""TensorRT backend (Jetson): engine files with a JSON header, run with ``execute_async_v3`` on one CUDA stream.

An engine file is ``MAGIC`` (8 bytes) + the header length (uint32, little endian) + a UTF-8 JSON header + the
serialized engine. The header says what the engine was built with and from::

    {"format": 1, "model": "head", "precision": "int8", "tensorrt": "10.3.0", "gpu": "Orin", "sm": "87",
     "source_onnx": "head.s8s8.onnx", "source_sha256": "...", "engine_sha256": "...", "profiles": {...},
     "created": "2026-...Z"}

An engine only runs with the TensorRT major.minor and GPU architecture (SM) it was built for, so the header is
checked before TensorRT sees the bytes, and a mismatch is an error that says to rebuild (``make engine``).
Engines are named ``<model>.<precision>.trt<major.minor>.sm<XY>.engine`` (:func:`engine_name`) so one bundle
folder can hold engines for several devices. ``calibration.engine`` builds them.

CUDA goes through NVIDIA's ``cuda-python`` bindings (its runtime API: ``cuda.bindings.runtime``, or ``cuda.cudart``
before 12.8), which install as wheels on aarch64; pycuda would have to be compiled on the Jetson. TensorRT and
cuda-python are imported lazily: this module loads (header, naming, checks) on any machine.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge.backends import TensorSpec, check_feeds

log = logging.getLogger(__name__)

MAGIC = b"CPLVTRT\x00"
HEADER_FORMAT = 1
PRECISIONS = ("int8", "fp16", "fp32")
_LENGTH = struct.Struct("<I")
_NAME = re.compile(r"^(?P<model>[A-Za-z0-9_]+)\.(?P<precision>int8|fp16|fp32)\.trt(?P<trt>\d+\.\d+)"
                   r"\.sm(?P<sm>\d+)\.engine$")
REBUILD = "rebuild it on this device with `make engine` (cplvad engine --bundle BUNDLE)"


class EngineMismatch(RuntimeError):
    """An engine file that this device cannot run as it is (other TensorRT, GPU or source model)."""


@dataclass(frozen=True)
class EngineHeader:
    """What an engine was built with and from."""

    model: str  # "head" | "clip_visual"
    precision: str  # "int8" | "fp16" | "fp32"
    tensorrt: str  # TensorRT version, e.g. "10.3.0"
    gpu: str  # device name
    sm: str  # compute capability without the dot, e.g. "87" (Orin)
    source_onnx: str  # ONNX file name the engine was built from
    source_sha256: str
    engine_sha256: str = ""
    profiles: dict[str, Any] = field(default_factory=dict)  # input -> {"min", "opt", "max"} shapes
    created: str = ""
    format: int = HEADER_FORMAT

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine precision {self.precision!r}; expected one of {PRECISIONS}")
        if not re.fullmatch(r"\d+", self.sm):
            raise ValueError(f"engine sm {self.sm!r}; expected digits such as '87'")


def trt_major_minor(version: str) -> str:
    """'10.3.0.26' -> '10.3'."""
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise ValueError(f"TensorRT version {version!r}; expected 'major.minor[.patch]'")
    return f"{int(parts[0])}.{int(parts[1])}"


def sm_string(capability: tuple[int, int]) -> str:
    """Compute capability (8, 7) -> '87'."""
    return f"{capability[0]}{capability[1]}"


def engine_name(model: str, precision: str, tensorrt: str, sm: str) -> str:
    """``head``, ``int8``, ``10.3.0``, ``87`` -> ``head.int8.trt10.3.sm87.engine``."""
    name = f"{model}.{precision}.trt{trt_major_minor(tensorrt)}.sm{sm}.engine"
    if not _NAME.match(name):
        raise ValueError(f"engine name {name!r} from model={model!r} precision={precision!r} sm={sm!r} is not "
                         f"<model>.<int8|fp16|fp32>.trt<X.Y>.sm<NN>.engine")
    return name


def parse_engine_name(name: str) -> dict[str, str] | None:
    """``head.int8.trt10.3.sm87.engine`` -> {"model", "precision", "trt", "sm"}; None for other names."""
    match = _NAME.match(Path(name).name)
    return match.groupdict() if match else None


def find_engine(folder: str | Path, model: str, tensorrt: str, sm: str,
                precisions: tuple[str, ...] = PRECISIONS) -> Path | None:
    """The engine of ``model`` for this TensorRT and GPU in ``folder``, best precision first; None if absent."""
    for precision in precisions:
        path = Path(folder) / engine_name(model, precision, tensorrt, sm)
        if path.is_file():
            return path
    return None


def write_engine(path: str | Path, header: EngineHeader, engine: bytes) -> Path:
    """Write header + engine; the header's ``engine_sha256`` is filled in here."""
    path = Path(path)
    fields = {**header.__dict__, "engine_sha256": hashlib.sha256(engine).hexdigest()}
    blob = json.dumps(fields, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + _LENGTH.pack(len(blob)) + blob)
        f.write(engine)
    tmp.replace(path)
    return path


def read_engine(path: str | Path, *, verify: bool = True) -> tuple[EngineHeader, bytes]:
    """(header, serialized engine) of an engine file; ValueError naming the file when it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TensorRT engine {path} not found; {REBUILD}")
    data = path.read_bytes()
    prefix = len(MAGIC) + _LENGTH.size
    if len(data) < prefix or data[:len(MAGIC)] != MAGIC:
        raise ValueError(f"{path}: not a CPL-VAD engine file (no {MAGIC!r} header; a bare TensorRT plan?); {REBUILD}")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if prefix + length > len(data):
        raise ValueError(f"{path}: truncated header ({length} bytes announced, {len(data) - prefix} present)")
    try:
        fields = json.loads(data[prefix:prefix + length])
        header = EngineHeader(**fields)
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: unreadable engine header ({err}); {REBUILD}") from None
    if header.format > HEADER_FORMAT:
        raise ValueError(f"{path}: header format {header.format} is newer than this runtime ({HEADER_FORMAT})")
    engine = data[prefix + length:]
    if verify and hashlib.sha256(engine).hexdigest() != header.engine_sha256:
        raise ValueError(f"{path}: engine bytes do not match the header's sha256 (corrupt copy); {REBUILD}")
    return header, engine


def check_header(header: EngineHeader, *, tensorrt: str, sm: str, source_sha256: str | None = None,
                 where: str = "engine") -> None:
    """Raise EngineMismatch when the engine was built for another TensorRT, GPU or source model."""
    problems = []
    if trt_major_minor(header.tensorrt) != trt_major_minor(tensorrt):
        problems.append(f"built with TensorRT {header.tensorrt}, this device has {tensorrt}")
    if header.sm != sm:
        problems.append(f"built for GPU sm{header.sm} ({header.gpu}), this GPU is sm{sm}")
    if source_sha256 is not None and header.source_sha256 != source_sha256:
        problems.append(f"built from another {header.source_onnx} (sha256 {header.source_sha256[:12]}..., the bundle "
                        f"has {source_sha256[:12]}...)")
    if problems:
        raise EngineMismatch(f"{where}: " + "; ".join(problems) + f"; {REBUILD}")


def cuda_runtime(importer: Callable[[str], ModuleType] = importlib.import_module) -> ModuleType:
    """cuda-python's runtime API module (``cuda.bindings.runtime``; ``cuda.cudart`` in releases before 12.8);
    ImportError saying how to install it."""
    errors = []
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importer(name)
        except ImportError as err:
            errors.append(f"{name}: {err}")
    raise ImportError("NVIDIA's cuda-python is not installed (pip install 'cuda-python>=12.2,<13', the jetson "
                      "extra); " + "; ".join(errors))


def cuda_call(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python call's ``(error, *values)``: the value (None, one, or a tuple); RuntimeError naming the
    call and CUDA's error name unless the error is ``cudaSuccess``."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        named = cudart.cudaGetErrorName(error)
        name = named[1].decode() if isinstance(named, tuple) and isinstance(named[1], bytes) else str(error)
        raise RuntimeError(f"CUDA {what} failed: {name}")
    return None if not values else values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, SM string) of a CUDA device, through cuda-python; RuntimeError when no usable GPU."""
    cudart = cuda_runtime()
    count = cuda_call(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if device >= count:
        raise RuntimeError(f"CUDA device {device} does not exist ({count} device(s))")
    prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return name, sm_string((prop.major, prop.minor))


# ----------------------------------------------------------------------------------------------- runtime


class CudaBuffer:
    """Host + device memory for one tensor, grown on demand (cuda-python runtime API)."""

    def __init__(self, cudart: Any, dtype: np.dtype) -> None:
        self._cudart = cudart
        self.dtype = np.dtype(dtype)
        self.capacity = 0
        self.host = np.empty(0, self.dtype)
        self.device = 0  # device pointer (int)

    def ensure(self, shape: tuple[int, ...]) -> np.ndarray:
        """A host view of ``shape``; device memory at least as large."""
        size = int(np.prod(shape))
        if size > self.capacity:
            self.free()
            self.host = np.empty(max(size, 1), self.dtype)
            self.device = int(cuda_call(self._cudart, self._cudart.cudaMalloc(self.host.nbytes), "cudaMalloc"))
            self.capacity = size
        return self.host[:size].reshape(shape)

    def to_device(self, stream: Any) -> None:
        cudart = self._cudart
        cuda_call(cudart, cudart.cudaMemcpyAsync(self.device, self.host.ctypes.data, self.host.nbytes,
                                                 cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
                  "cudaMemcpyAsync (host to device)")

    def to_host(self, stream: Any) -> None:
        cudart = self._cudart
        cuda_call(cudart, cudart.cudaMemcpyAsync(self.host.ctypes.data, self.device, self.host.nbytes,
                                                 cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
                  "cudaMemcpyAsync (device to host)")

    def free(self) -> None:
        if self.device:
            cuda_call(self._cudart, self._cudart.cudaFree(self.device), "cudaFree")
            self.device, self.capacity = 0, 0


class TensorRTBackend:
    """Runs one engine file: same interface as ``OnnxRuntimeBackend`` (``inputs``, ``outputs``, ``run``).

    ``source_sha256``: the bundle's sha256 of the ONNX file the engine must have been built from (checked
    against the header). ``device``: CUDA device index. The runtime API uses the device's primary context; the
    device is made current around each call, so the backend can be used from any one thread at a time.
    """

    def __init__(self, path: str | Path, *, source_sha256: str | None = None, device: int = 0) -> None:
        import tensorrt as trt  # type: ignore[import-not-found]

        self.path = Path(path)
        self.header, plan = read_engine(self.path)
        cudart = cuda_runtime()
        self._cudart, self._device = cudart, device
        _, sm = gpu_info(device)
        check_header(self.header, tensorrt=trt.__version__, sm=sm, source_sha256=source_sha256, where=str(self.path))
        cuda_call(cudart, cudart.cudaSetDevice(device), "cudaSetDevice")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineMismatch(f"{self.path}: TensorRT {trt.__version__} could not deserialize the engine; "
                                 f"{REBUILD}")
        self.context = self.engine.create_execution_context()
        self.stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        specs_in, specs_out = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dims = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
            spec = TensorSpec(name, dims, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (specs_in if is_input else specs_out).append(spec)
        self.inputs, self.outputs = tuple(specs_in), tuple(specs_out)
        self._buffers = {s.name: CudaBuffer(cudart, s.dtype) for s in self.inputs + self.outputs}
        log.info("%s: TensorRT %s %s engine for %s (sm%s): %s -> %s", self.path.name, trt.__version__,
                 self.header.precision, self.header.model, self.header.sm,
                 ", ".join(s.describe() for s in self.inputs), ", ".join(s.describe() for s in self.outputs))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.inputs, feeds, model=self.path.name)
        cudart = self._cudart
        cuda_call(cudart, cudart.cudaSetDevice(self._device), "cudaSetDevice")
        for spec in self.inputs:
            value = feeds[spec.name]
            if not self.context.set_input_shape(spec.name, value.shape):
                raise ValueError(f"{self.path.name}: input {spec.name} shape {list(value.shape)} is outside the "
                                 f"engine's optimisation profile {self.header.profiles.get(spec.name)}")
            buffer = self._buffers[spec.name]
            np.copyto(buffer.ensure(value.shape), value)
            buffer.to_device(self.stream)
            self.context.set_tensor_address(spec.name, buffer.device)
        hosts = {}
        for spec in self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            buffer = self._buffers[spec.name]
            hosts[spec.name] = buffer.ensure(shape)
            self.context.set_tensor_address(spec.name, buffer.device)
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"{self.path.name}: TensorRT execution failed")
        for name in hosts:
            self._buffers[name].to_host(self.stream)
        cuda_call(cudart, cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {name: host.copy() for name, host in hosts.items()}


# ----------------------------------------------------------------------------------------------- up-front checks


def tensorrt_environment(device: int = 0) -> tuple[str, str]:
    """(TensorRT version, GPU SM) of this machine; EngineMismatch saying what is missing when TensorRT, cuda-python
    or a CUDA GPU is not there (checked before a run starts, so a misconfigured device exits 2)."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as err:
        raise EngineMismatch(f"runtime.backend=tensorrt but TensorRT is not importable ({err}); install JetPack's "
                             "TensorRT Python bindings on the Jetson, or run with --backend onnxruntime") from None
    try:
        _, sm = gpu_info(device)
    except ImportError as err:
        raise EngineMismatch(f"runtime.backend=tensorrt but cuda-python is not importable ({err}); install it on the "
                             "Jetson, or run with --backend onnxruntime") from None
    except Exception as err:  # CUDA errors when there is no driver or no GPU
        raise EngineMismatch(f"runtime.backend=tensorrt but no CUDA GPU {device} is usable "
                             f"({type(err).__name__}: {err})") from None
    return trt.__version__, sm


def engines_for(folder: str | Path, files: Mapping[str, str], tensorrt: str, sm: str,
                models: tuple[str, ...] = ("clip_visual", "head")) -> dict[str, Path]:
    """The engine each model of a bundle would run with on this TensorRT and GPU, checked: present
    (FileNotFoundError), ours and intact (ValueError), built for this TensorRT and GPU from the bundle's own ONNX
    file (EngineMismatch). ``files``: the bundle manifest's sha256 per file name."""
    found = {}
    for model in models:
        path = find_engine(folder, model, tensorrt, sm)
        if path is None:
            raise FileNotFoundError(f"no TensorRT engine for {model} (TensorRT {trt_major_minor(tensorrt)}, GPU sm{sm}) "
                                    f"in {folder}: expected {engine_name(model, 'fp16', tensorrt, sm)} or another "
                                    f"precision; {REBUILD}")
        header, _ = read_engine(path)
        source = files.get(header.source_onnx)
        if source is None:
            raise EngineMismatch(f"{path}: built from {header.source_onnx}, which the bundle's manifest does not "
                                 f"list; {REBUILD}")
        check_header(header, tensorrt=tensorrt, sm=sm, source_sha256=source, where=str(path))
        found[model] = path
    return found


def check_engines(folder: str | Path, files: Mapping[str, str]) -> dict[str, Path]:
    """:func:`engines_for` on this machine's TensorRT and GPU (:func:`tensorrt_environment`)."""
    tensorrt, sm = tensorrt_environment()
    return engines_for(folder, files, tensorrt, sm)
