"""The Jetson install path, checked where it can be here: the prerequisite checker (edge.jetson_check and
deploy/check_jetson.sh), the cuda-python calls of the TensorRT backend, and the install metadata (numpy < 2 on
aarch64, no pycuda, `make engine` in the venv). TensorRT itself only runs on a Jetson."""
from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from edge.backends.tensorrt import cuda_call, cuda_runtime, gpu_info
from edge.jetson_check import (check_broker, check_cuda, check_l4t, check_numpy_for_opencv, check_packages,
                               check_python, check_tensorrt, main, parse_l4t_release, version_tuple)
from tests.mqtt_broker import MosquittoBroker, free_port

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None


def test_l4t_release_and_versions() -> None:
    line = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 2024"
    assert parse_l4t_release(line) == (36, 4, 0)
    assert parse_l4t_release("# R35 (release), REVISION: 5.0, GCID: 1") == (35, 5, 0)
    assert parse_l4t_release("Ubuntu 22.04") is None
    assert version_tuple("10.3.0.30") == (10, 3, 0, 30) and version_tuple("2.1.0rc1") == (2, 1, 0)
    assert version_tuple("8.6.2") < (10, 3)


@pytest.mark.parametrize(("revision", "ok", "says"), [
    ("# R36 (release), REVISION: 4.3, GCID: 1", True, "L4T r36.4.3 (JetPack 6.1/6.2)"),
    ("# R36 (release), REVISION: 3.0, GCID: 1", False, "JetPack 6.0"),
    ("# R35 (release), REVISION: 5.0, GCID: 1", False, "L4T r35.5.0"),
])
def test_jetpack_6_1_or_newer_is_required(tmp_path: Path, revision: str, ok: bool, says: str) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(revision + "\n")
    check = check_l4t(release)
    assert check.ok is ok and says in check.detail
    if not ok:
        assert "JetPack 6.1+" in check.fix and "MISSING" in check.line()


def test_what_this_machine_lacks_is_reported_with_the_fix(tmp_path: Path) -> None:
    no_jetson = check_l4t(tmp_path / "absent")
    assert not no_jetson.ok and "not a Jetson" in no_jetson.detail and "--backend onnxruntime" in no_jetson.fix
    if importlib.util.find_spec("tensorrt") is None:
        trt = check_tensorrt()
        assert not trt.ok and "not importable" in trt.detail and "--system-site-packages" in trt.fix
    cuda = check_cuda()
    assert not cuda.ok  # no NVIDIA driver here: either cuda-python is absent or it finds no driver
    assert ("cuda-python" in cuda.detail and ".[jetson]" in cuda.fix) or "CUDA cudaGetDeviceCount failed" in cuda.detail
    assert check_python().ok
    numpy_cv = check_numpy_for_opencv()
    assert numpy_cv.ok and "(pip)" in numpy_cv.detail  # pip's OpenCV wheel: any numpy
    assert check_packages().ok
    missing = check_packages(("json", "no_such_package_xyz"))
    assert not missing.ok and "no_such_package_xyz" in missing.detail and "json" not in missing.detail


def test_broker_reachability(mosquitto_bin: str, tmp_path: Path) -> None:
    with MosquittoBroker(mosquitto_bin, tmp_path) as broker:
        assert check_broker(broker.host, broker.port).ok
    closed = check_broker("127.0.0.1", free_port(), timeout_s=1)
    assert not closed.ok and "not reachable" in closed.detail and "mqtt.host" in closed.fix


def test_main_and_the_shell_script_list_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--mqtt-host", "127.0.0.1", "--mqtt-port", str(free_port())]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^MISSING Jetson Linux \(JetPack 6\.1\+\): no /etc/nv_tegra_release", out, re.M)
    assert re.search(r"^ok +runtime packages: numpy ", out, re.M) and "of 7 ok; missing: " in out
    script = subprocess.run([str(ROOT / "deploy" / "check_jetson.sh"), "--mqtt-port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert script.returncode == 1 and "MISSING Jetson Linux" in script.stdout and "MQTT broker" in script.stdout


@pytest.mark.skipif(not HAS_CUDA_PYTHON, reason="cuda-python not installed (the jetson extra)")
def test_cuda_python_calls_unpack_values_and_name_errors() -> None:
    cudart = cuda_runtime()
    assert cuda_call(cudart, cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion") >= 12000
    with pytest.raises(RuntimeError, match="CUDA cudaMalloc failed: cudaError"):
        cuda_call(cudart, (cudart.cudaError_t.cudaErrorMemoryAllocation, 0), "cudaMalloc")
    try:
        name, sm = gpu_info()
    except RuntimeError as err:  # no GPU or driver here: a clear error, not a crash
        assert "CUDA cudaGetDeviceCount failed" in str(err)
    else:
        assert name and sm.isdigit()


def test_cuda_python_missing_says_how_to_install() -> None:
    def importer(name: str):
        raise ImportError(f"No module named {name!r}")

    with pytest.raises(ImportError, match=r"pip install 'cuda-python>=12.2,<13'"):
        cuda_runtime(importer)


def test_install_metadata_keeps_numpy_1_on_the_jetson_and_builds_nothing() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    jetson = [Requirement(r) for r in project["optional-dependencies"]["jetson"]]
    assert not any(r.name == "pycuda" for r in jetson)  # compiled from source on aarch64
    assert any(r.name == "cuda-python" for r in jetson)
    aarch64 = {"platform_machine": "aarch64", "python_version": "3.10", "sys_platform": "linux"}
    numpy = [r for r in jetson if r.name == "numpy" and (r.marker is None or r.marker.evaluate(aarch64))]
    assert numpy and all(not r.specifier.contains("2.0.0") and r.specifier.contains("1.26.4") for r in numpy)
    assert not any(r.marker.evaluate({**aarch64, "platform_machine": "x86_64"}) for r in jetson
                   if r.name == "numpy" and r.marker is not None)
    constraints = (ROOT / "deploy" / "jetson-constraints.txt").read_text()
    assert any(line.replace(" ", "") == "numpy<2" for line in constraints.splitlines())
    makefile = (ROOT / "Makefile").read_text()
    engine = makefile[makefile.index("\nengine:"):].split("\n\n")[0]
    assert "$(PYTHON) -m" in engine and "python3 -m" not in engine  # the venv that sees TensorRT
    guide = (ROOT / "deploy" / "README.md").read_text()
    assert "JetPack 6.1" in guide and "jetson-constraints.txt" in guide and "check_jetson.sh" in guide
    assert "sudo -u cplvad" in guide
