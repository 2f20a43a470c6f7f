"""Bad input to the edge process: a config file with unknown or malformed keys, a broken bundle (missing file,
tampered file, text embeddings for other classes), camera names with MQTT wildcards; property tests over config
building. Each bad start must exit 2 with a message that names the key or file, before touching any camera.

Covered elsewhere and not repeated here: ``--set`` / ``--validate-config`` key errors (tests/test_edge_config.py),
bundle checks in-process (tests/test_bundle.py), NaN/Inf features held in step (tests/test_pipeline.py), event
payloads vs the schema and topic-safe under any input (tests/test_events.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import EdgeConfig
from edge.configfile import ConfigError, load_config
from edge.outbox import Outbox
from edge.topics import Topics, restore_topic_part
from tests.mqtt_broker import MosquittoBroker
from tests.test_faults import PREFIX, EdgeProcess, Recorder, check_delivery, delivered_all, wait_until, write_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    from tests.test_pipeline import tiny_bundle_path

    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


def run_edge(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Start the device as an operator would, with a camera that would stream if it got that far."""
    video = write_video(tmp_path / "cam.mp4", frames=20)
    return subprocess.run([sys.executable, str(ROOT / "edge" / "run.py"), "--camera", str(video), "--mqtt-port", "1",
                           "--set", f"outbox.path={tmp_path / 'outbox.sqlite3'}", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


# -- config ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("yaml_text", "named"), [
    ("mqtt:\n  hostname: broker.local\n", ["'mqtt.hostname'", "did you mean 'mqtt.host'"]),
    ("capture:\n  read_timeout_s: soon\n", ["capture.read_timeout_s", "soon"]),
    ("outbox:\n  max_rows: -3\n", ["outbox.max_rows"]),
    ("events:\n  update_every: 0\n", ["events.update_every"]),
    ("mqtt: [1, 2\n", ["edge.yaml"]),  # not YAML at all
])
def test_bad_config_file_exits_2_naming_the_key(tiny_bundle: Path, tmp_path: Path, yaml_text: str,
                                                named: list[str]) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(yaml_text)
    result = run_edge(tmp_path, "--config", str(config), "--bundle", str(tiny_bundle))
    assert result.returncode == 2, result.stderr[-2000:]
    for text in named:
        assert text in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "connecting" not in result.stderr  # no camera was opened


# -- bundle ----------------------------------------------------------------------------------------------------
def _rewrite_text_classes(bundle: Path, classes: list[str]) -> None:
    """Text embeddings for other classes, with the manifest's file hash updated (a consistent but wrong bundle)."""
    path = bundle / "text_embeddings.npz"
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    data["classes"] = np.array(classes)
    with path.open("wb") as f:
        np.savez(f, **data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["text_embeddings.npz"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _poison_text_embeddings(bundle: Path) -> None:
    """NaN text embeddings with the manifest's file hash updated (what a diverged teacher exports)."""
    path = bundle / "text_embeddings.npz"
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    data["embeddings"] = np.full_like(data["embeddings"], np.nan)
    with path.open("wb") as f:
        np.savez(f, **data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["text_embeddings.npz"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fault", ["missing", "tampered", "text_classes", "nan_text"])
def test_broken_bundle_exits_2_naming_the_file(tiny_bundle: Path, tmp_path: Path, fault: str) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    if fault == "missing":
        (bundle / "head.onnx").unlink()
        expected = "missing file head.onnx"
    elif fault == "tampered":
        data = bytearray((bundle / "clip_visual.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF  # one bit pattern changed in the weights: still a loadable model
        (bundle / "clip_visual.onnx").write_bytes(bytes(data))
        expected = "clip_visual.onnx: sha256 mismatch"
    elif fault == "text_classes":
        _rewrite_text_classes(bundle, ["Normal", "Abuse", "Fighting", "Arson"])
        expected = "differ"
    else:
        _poison_text_embeddings(bundle)
        expected = "NaN or infinite"
    result = run_edge(tmp_path, "--bundle", str(bundle))
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr and str(bundle) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


# -- camera names ----------------------------------------------------------------------------------------------
def test_camera_names_with_wildcards_stay_one_escaped_topic_level(tiny_bundle: Path, mosquitto_bin: str,
                                                                  tmp_path: Path) -> None:
    """A camera named after its file gets a name made safe from the file's name; MQTT wildcards in it reach no
    topic (they would subscribe-match other cameras' topics), and the two cameras stay apart."""
    hostile = "lobby+#1.mp4"  # ('%' would make OpenCV read it as an image-sequence pattern)
    video = write_video(tmp_path / hostile, frames=80)
    plain = write_video(tmp_path / "plain.mp4", frames=80)
    with MosquittoBroker(mosquitto_bin, tmp_path / "broker") as broker, Recorder(broker.port) as vms, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [str(video), str(plain)], "capture.realtime=false",
                        extra=["--exit-when-done"]) as edge:
        assert edge.process.wait(60) == 0, edge.log()[-3000:]
        produced = edge.events()
        wait_until(delivered_all(produced, vms), 15, "every event delivered")
    assert check_delivery(produced, vms.events())["lost"] == 0
    topics = {topic for topic, _, _ in vms.messages}
    assert all("+" not in t and "#" not in t and t.startswith(PREFIX + "/") for t in topics)
    cameras = {topic.split("/")[2] for topic in topics if topic.count("/") == 3}
    assert cameras == {"lobby-1", "plain"} == {e["camera"] for e in produced}
    kinds = {t.rsplit("/", 1)[1] for t in topics if "/lobby-1/" in t}
    assert {"events", "status"} <= kinds <= {"events", "status", "state"}


# -- properties ------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=40))
def test_any_camera_source_gives_a_valid_config_with_one_safe_topic_level_or_a_value_error(source: str) -> None:
    try:
        config = EdgeConfig(cameras=[source], device="dev")
    except ValueError:
        return  # pydantic's ValidationError is a ValueError naming `cameras`
    from edge.capture import parse_source

    name = parse_source(source).name
    topic = Topics(config.mqtt_prefix).events(name)
    level = topic.split("/")[2]
    assert topic == f"cplvad/dev/{level}/events" and not set(level) & set("/+#\0")
    assert restore_topic_part(level) == name


_KNOWN = set(EdgeConfig.model_fields)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[a-z_]{1,12}(\.[a-z_]{1,12}){0,2}", fullmatch=True), st.integers())
def test_any_unknown_key_is_a_config_error_that_names_it(key: str, value: int) -> None:
    top = key.split(".")[0]
    if top in _KNOWN:
        key = f"x{key}"  # make it unknown at the top level
    with pytest.raises(ConfigError) as err:
        load_config(EdgeConfig, None, [f"{key}={value}"])
    assert f"'{key.split('.')[0]}" in str(err.value)


# -- outbox, cameras, backend ----------------------------------------------------------------------------------
def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The process exited 2 with exactly one ERROR line and no traceback; that line."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize("fault", ["unwritable", "not_sqlite", "in_use"])
def test_an_unusable_outbox_exits_2_naming_it(tiny_bundle: Path, tmp_path: Path, fault: str) -> None:
    """Exit 1 would make systemd restart the runtime forever; a bad outbox is a configuration problem."""
    if fault == "unwritable":
        (tmp_path / "var").write_text("a file where the outbox folder should be")
        path, expected = tmp_path / "var" / "outbox.sqlite3", "cannot create it"
    elif fault == "not_sqlite":
        path, expected = tmp_path / "outbox.sqlite3", "cannot open as SQLite"
        path.write_text("these are not the bytes of an SQLite database " * 40)
    else:
        path, expected = tmp_path / "outbox.sqlite3", "in use by another process"
    held = Outbox(path) if fault == "in_use" else None  # another runtime holds it
    try:
        result = run_edge(tmp_path, "--bundle", str(tiny_bundle), "--set", f"outbox.path={path}")
    finally:
        if held is not None:
            held.close()
    line = _one_error_line(result)
    assert expected in line and str(path) in line, line
    assert "connecting" not in result.stderr


@pytest.mark.parametrize("fault", ["missing", "not_video"])
def test_an_unreadable_file_camera_with_exit_when_done_exits_2(tiny_bundle: Path, tmp_path: Path, fault: str) -> None:
    video = tmp_path / "clip.mp4"
    if fault == "not_video":
        video.write_text("not a video\n" * 100)
    result = subprocess.run([sys.executable, str(ROOT / "edge" / "run.py"), "--camera", f"door={video}",
                             "--bundle", str(tiny_bundle), "--mqtt-port", "1", "--exit-when-done",
                             "--set", f"outbox.path={tmp_path / 'outbox.sqlite3'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    line = _one_error_line(result)
    assert "camera door" in line and str(video) in line, line
    assert ("no such file" if fault == "missing" else "not a readable video") in line, line


def test_an_empty_camera_name_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", frames=20)
    result = subprocess.run([sys.executable, str(ROOT / "edge" / "run.py"), "--camera", "=clip.mp4",
                             "--bundle", str(tiny_bundle), "--validate-config"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    line = _one_error_line(result)
    assert "empty camera name" in line and "=clip.mp4" in line, line


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_the_tensorrt_backend_without_tensorrt_is_refused_up_front(tiny_bundle: Path, tmp_path: Path) -> None:
    for extra in (["--validate-config"], ["--exit-when-done"]):  # the check, and a run that would crash later
        result = run_edge(tmp_path, "--bundle", str(tiny_bundle), "--backend", "tensorrt", *extra)
        line = _one_error_line(result)
        assert "TensorRT is not importable" in line and "--backend onnxruntime" in line, line


@pytest.mark.parametrize(("args", "origin"), [(["--set", "outbox.max_rows=-3"], "--set outbox.max_rows=-3"),
                                              (["--device-name", "front door"], "--device-name front door")])
def test_command_line_errors_name_the_command_line(tiny_bundle: Path, tmp_path: Path, args: list[str],
                                                   origin: str) -> None:
    """A bad value given on the command line is blamed on the flag, not on configs/edge/default.yaml."""
    line = _one_error_line(run_edge(tmp_path, "--bundle", str(tiny_bundle), "--validate-config", *args))
    assert f"edge.run: {origin}: " in line and "default.yaml" not in line, line
