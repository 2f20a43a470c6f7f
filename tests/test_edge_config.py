"""The edge config: the shipped YAML loads, unknown keys and bad values name the key, secrets never printed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import EdgeConfig
from edge.configfile import ConfigError, load_config
from edge.run import parse_args, resolve_config
from edge.smoother import SmootherParams

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs" / "edge" / "default.yaml"


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(EdgeConfig, DEFAULT, overrides)
    return str(info.value)


def test_every_edge_yaml_loads() -> None:
    files = sorted((ROOT / "configs" / "edge").glob("*.yaml"))
    assert DEFAULT in files
    for path in files:
        config = load_config(EdgeConfig, path)
        assert config.mqtt_prefix.startswith("cplvad/")


def test_prefix_defaults_to_device_and_fills_the_placeholder() -> None:
    config = load_config(EdgeConfig, DEFAULT, ["device=jetson-07"])
    assert config.mqtt_prefix == "cplvad/jetson-07"
    assert config.resolved_mqtt().prefix == "cplvad/jetson-07"
    # an mqtt section without a prefix still gets the device's default
    assert load_config(EdgeConfig, None, ["device=d1", "mqtt.host=broker"]).mqtt_prefix == "cplvad/d1"
    assert load_config(EdgeConfig, None, ["device=d1", "mqtt.prefix=site/a"]).mqtt_prefix == "site/a"


def test_unknown_keys_are_named_with_a_suggestion() -> None:
    message = _error(["runtime.clip_bach=4"])
    assert "'runtime.clip_bach'" in message and "did you mean 'runtime.clip_batch'" in message
    message = _error(["camera=[0]"])
    assert "'camera'" in message and "did you mean 'cameras'" in message


@pytest.mark.parametrize(("override", "key"), [
    ("runtime.clip_batch=0", "runtime.clip_batch"),
    ("runtime.backend=tflite", "runtime.backend"),
    ("runtime.encode_every=17", "runtime.encode_every"),
    ("mqtt.port=70000", "mqtt.port"),
    ("mqtt.prefix=a/+/b", "mqtt.prefix"),
    ("device=a/b", "device"),
    ("stats.interval_s=0", "stats.interval_s"),
    ("capture.queue_size=0", "capture.queue_size"),
    ("cameras=[ftp://host/x]", "cameras"),
    ("cameras=[door=0, door=1]", "cameras"),
])
def test_bad_values_name_the_key(override: str, key: str) -> None:
    message = _error([override])
    assert message.startswith(f"--set {override}: {key} = ") and "\n" not in message, message


def test_flags_become_validated_overrides(tmp_path: Path) -> None:
    args = parse_args(["--config", str(DEFAULT), "--camera", "door=rtsp://u:pw@cam/1", "--camera", "clip.mp4",
                       "--mqtt-host", "broker", "--mqtt-port", "8883", "--device-name", "dev-1", "--realtime",
                       "--jsonl", str(tmp_path / "e.jsonl"), "--set", "stats.interval_s=2"])
    config = resolve_config(args)
    assert config.cameras == ["door=rtsp://u:pw@cam/1", "clip.mp4"]
    assert (config.mqtt.host, config.mqtt.port, config.device_name) == ("broker", 8883, "dev-1")
    assert config.capture.realtime is True and config.stats.interval_s == 2
    assert config.jsonl == tmp_path / "e.jsonl"
    with pytest.raises(ConfigError, match="mqtt.port"):
        resolve_config(parse_args(["--config", str(DEFAULT), "--mqtt-port", "0"]))


def test_printed_config_masks_credentials() -> None:
    config = load_config(EdgeConfig, DEFAULT, ["cameras=[door=rtsp://admin:hunter2@10.0.0.5/s]", "device=d"])
    text = config.to_yaml()
    assert "hunter2" not in text and "admin:***@10.0.0.5" in text
    assert "prefix: cplvad/d" in text


def _validate(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "edge" / "run.py"), "--validate-config", "--config",
                           str(DEFAULT), *extra], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_validate_config_reports_errors_with_exit_2_and_never_the_password(tmp_path: Path) -> None:
    secret = "s3cr3t-value-123"
    bad = _validate(tmp_path, "--set", "mqtt.password_env=EDGE_TEST_PW", "--set", "runtime.clip_batch=-1",
                    env={"EDGE_TEST_PW": secret})
    assert bad.returncode == 2, bad.stderr
    assert "runtime.clip_batch" in bad.stderr
    assert secret not in bad.stdout + bad.stderr
    missing = _validate(tmp_path, "--camera", "0", "--set", "mqtt.password_env=EDGE_TEST_UNSET_PW")
    assert missing.returncode == 2 and "EDGE_TEST_UNSET_PW" in missing.stderr
    no_bundle = _validate(tmp_path, "--camera", "0", "--bundle", str(tmp_path / "nowhere"),
                          "--set", "mqtt.password_env=EDGE_TEST_PW", env={"EDGE_TEST_PW": secret})
    assert no_bundle.returncode == 2 and "nowhere" in no_bundle.stderr
    assert secret not in no_bundle.stdout + no_bundle.stderr


def test_alert_sensitivity_overrides_the_bundle_globally_and_per_camera() -> None:
    bundle = SmootherParams(theta_on=0.6, theta_off=0.5, m=5, g=7)
    config = load_config(EdgeConfig, DEFAULT, ["cameras=[door=a.mp4, yard=b.mp4]", "smoother.theta_on=0.7",
                                               "smoother.cameras.door.theta_on=0.9", "smoother.cameras.door.m=2"])
    door, yard = config.smoother.params_for("door", bundle), config.smoother.params_for("yard", bundle)
    assert (door.theta_on, door.theta_off, door.m, door.g) == (0.9, 0.5, 2, 7)
    assert (yard.theta_on, yard.theta_off, yard.m, yard.g) == (0.7, 0.5, 5, 7)
    assert load_config(EdgeConfig, DEFAULT).smoother.params_for("any", bundle) == bundle  # nothing set: the bundle's
    low = load_config(EdgeConfig, DEFAULT, ["smoother.theta_on=0.3"]).smoother.params_for("any", bundle)
    assert (low.theta_on, low.theta_off) == (0.3, 0.3)  # the bundle's theta_off, capped at theta_on
    with pytest.raises(ConfigError, match=r"theta_on=0.6 \(the bundle's manifest\) < theta_off=0.65 "
                                          r"\(smoother.cameras.door.theta_off\)"):
        load_config(EdgeConfig, DEFAULT, ["cameras=[door=a.mp4]", "smoother.cameras.door.theta_off=0.65"]) \
            .smoother.params_for("door", bundle)


@pytest.mark.parametrize(("overrides", "message"), [
    (["smoother.theta_onn=0.7"], "smoother.theta_onn"),
    (["cameras=[door=a.mp4]", "smoother.cameras.door.tehta_on=0.7"], "smoother.cameras.door.tehta_on"),
    (["smoother.theta_on=1.5"], "smoother.theta_on"),
    (["smoother.m=0"], "smoother.m"),
    (["cameras=[door=a.mp4]", "smoother.cameras.gate.theta_on=0.7"], "smoother.cameras.gate: no camera is named"),
    (["smoother.theta_on=0.4", "smoother.theta_off=0.6"], "smoother.theta_off=0.6 > smoother.theta_on=0.4"),
])
def test_alert_sensitivity_errors_name_the_key(overrides: list[str], message: str) -> None:
    assert message in _error(overrides)
