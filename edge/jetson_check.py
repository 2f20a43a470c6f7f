"""Check a Jetson for what ``--backend tensorrt`` and ``make engine`` need, and say what is missing.

    .venv/bin/python -m edge.jetson_check --mqtt-host broker.local      # deploy/check_jetson.sh runs this

Checks, each printed as ``ok`` / ``MISSING`` with the fix: Jetson Linux (L4T r36.4+ = JetPack 6.1+, whose
TensorRT is 10.3; JetPack 6.0 = r36.2/36.3 ships TensorRT 8.6), Python >= 3.10, TensorRT importable (JetPack's
bindings, seen through ``--system-site-packages``) and >= 10.3, CUDA through NVIDIA's ``cuda-python`` bindings
with a usable GPU, numpy < 2 when OpenCV is JetPack's (built against numpy 1), the runtime's packages, and the
MQTT broker reachable over TCP. Exit code 0 when nothing is missing, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

log = logging.getLogger("edge.jetson_check")

L4T_RELEASE = Path("/etc/nv_tegra_release")
MIN_L4T = (36, 4)  # JetPack 6.1
MIN_TENSORRT = (10, 3)
JETPACK_OF_L4T = {(36, 2): "6.0 DP", (36, 3): "6.0", (36, 4): "6.1/6.2"}
RUNTIME_PACKAGES = ("numpy", "cv2", "onnxruntime", "paho.mqtt", "pydantic", "yaml", "jsonschema")
INSTALL = ".venv/bin/pip install -c deploy/jetson-constraints.txt -e '.[jetson]'"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        status = "ok     " if self.ok else "MISSING"
        return f"{status} {self.name}: {self.detail}" + ("" if self.ok or not self.fix else f"\n        fix: {self.fix}")


def version_tuple(text: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); '2.1.0rc1' -> (2, 1, 0); leading digits of each part only."""
    parts = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def parse_l4t_release(text: str) -> tuple[int, int, int] | None:
    """``# R36 (release), REVISION: 4.0, ...`` (/etc/nv_tegra_release) -> (36, 4, 0); None if not of that form."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def check_l4t(release_file: Path = L4T_RELEASE) -> Check:
    name = "Jetson Linux (JetPack 6.1+)"
    try:
        text = release_file.read_text()
    except OSError:
        return Check(name, False, f"no {release_file}: not a Jetson (or no JetPack)",
                     "flash JetPack 6.1 or newer (SDK Manager); off a Jetson run --backend onnxruntime")
    version = parse_l4t_release(text)
    if version is None:
        return Check(name, False, f"{release_file} does not say the L4T release: {text.strip()[:80]!r}")
    jetpack = JETPACK_OF_L4T.get(version[:2], "unknown")
    detail = f"L4T r{version[0]}.{version[1]}.{version[2]} (JetPack {jetpack})"
    if version[:2] < MIN_L4T:
        return Check(name, False, detail + "; JetPack 6.0 and older ship TensorRT 8.6 or older",
                     "upgrade to JetPack 6.1+ (L4T r36.4+, TensorRT 10.3)")
    return Check(name, True, detail)


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    ok = version[:2] >= (3, 10)
    return Check("Python >= 3.10", ok, ".".join(map(str, version)), "" if ok else "use JetPack 6's python3 (3.10)")


def _import(name: str, importer: Callable[[str], ModuleType]) -> tuple[ModuleType | None, str]:
    try:
        return importer(name), ""
    except Exception as err:  # ImportError, or a binary module failing to load (e.g. numpy ABI)
        return None, f"{type(err).__name__}: {err}"


def check_tensorrt(importer: Callable[[str], ModuleType] = importlib.import_module) -> Check:
    name = "TensorRT >= 10.3"
    trt, error = _import("tensorrt", importer)
    if trt is None:
        return Check(name, False, f"not importable ({error})",
                     "apt install python3-libnvinfer (JetPack) and create the venv with --system-site-packages")
    version = str(getattr(trt, "__version__", "?"))
    if version_tuple(version)[:2] < MIN_TENSORRT:
        return Check(name, False, f"TensorRT {version}", "JetPack 6.0 ships TensorRT 8.6: upgrade to JetPack 6.1+")
    return Check(name, True, f"TensorRT {version}")


def check_cuda(importer: Callable[[str], ModuleType] = importlib.import_module) -> Check:
    name = "CUDA GPU (cuda-python)"
    try:
        from edge.backends.tensorrt import cuda_runtime, gpu_info
        cuda_runtime(importer)
        gpu, sm = gpu_info()
    except ImportError as err:
        return Check(name, False, f"cuda-python not importable ({err})", INSTALL)
    except RuntimeError as err:
        return Check(name, False, str(err), "check the NVIDIA driver (JetPack) and that this user is in the video "
                                            "and render groups")
    return Check(name, True, f"{gpu}, sm{sm}")


def check_numpy_for_opencv(importer: Callable[[str], ModuleType] = importlib.import_module) -> Check:
    """JetPack's OpenCV (python3-opencv, with GStreamer) is built against numpy 1: numpy 2 breaks it."""
    name = "numpy for OpenCV"
    numpy, error = _import("numpy", importer)
    if numpy is None:
        return Check(name, False, f"numpy not importable ({error})", INSTALL)
    cv2, error = _import("cv2", importer)
    if cv2 is None:
        hint = " (numpy 2 with JetPack's OpenCV?)" if version_tuple(numpy.__version__)[0] >= 2 else ""
        return Check(name, False, f"cv2 not importable{hint}: {error}", f"pip install 'numpy<2'; {INSTALL}")
    system = "dist-packages" in str(getattr(cv2, "__file__", "")) and "site-packages" not in str(cv2.__file__)
    detail = f"numpy {numpy.__version__}, OpenCV {cv2.__version__} ({'JetPack' if system else 'pip'})"
    if system and version_tuple(numpy.__version__)[0] >= 2:
        return Check(name, False, detail + ": JetPack's OpenCV is built for numpy 1", f"pip install 'numpy<2'; {INSTALL}")
    return Check(name, True, detail)


def check_packages(names: Sequence[str] = RUNTIME_PACKAGES,
                   importer: Callable[[str], ModuleType] = importlib.import_module) -> Check:
    missing, found = [], []
    for package in names:
        module, error = _import(package, importer)
        if module is None:
            missing.append(f"{package} ({error})")
        else:
            found.append(f"{package} {vars(module).get('__version__', '')}".strip())
    if missing:
        return Check("runtime packages", False, "missing: " + "; ".join(missing), INSTALL)
    return Check("runtime packages", True, ", ".join(found))


def check_broker(host: str, port: int, timeout_s: float = 3.0) -> Check:
    name = f"MQTT broker {host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return Check(name, True, "reachable (TCP)")
    except OSError as err:
        return Check(name, False, f"not reachable ({err.strerror or err})",
                     "start mosquitto there (apt install mosquitto) or set mqtt.host / mqtt.port")


def run_checks(mqtt_host: str, mqtt_port: int, release_file: Path = L4T_RELEASE) -> list[Check]:
    return [check_l4t(release_file), check_python(), check_tensorrt(), check_cuda(), check_numpy_for_opencv(),
            check_packages(), check_broker(mqtt_host, mqtt_port)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.jetson_check", description=__doc__.split("\n")[0])
    p.add_argument("--mqtt-host", default="localhost")
    p.add_argument("--mqtt-port", type=int, default=1883)
    args = p.parse_args(argv)
    checks = run_checks(args.mqtt_host, args.mqtt_port)
    for check in checks:
        sys.stdout.write(check.line() + "\n")
    missing = [c.name for c in checks if not c.ok]
    sys.stdout.write(f"{len(checks) - len(missing)} of {len(checks)} ok" +
                     (f"; missing: {', '.join(missing)}\n" if missing else "\n"))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
