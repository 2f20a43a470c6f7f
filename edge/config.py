"""The device's configuration (``configs/edge/*.yaml``): cameras, bundle, backends, capture, MQTT, events, stats.

Loaded with :func:`edge.configfile.load_config` (unknown keys and bad values name the key); command-line flags
of ``edge/run.py`` are applied as dotted overrides on top. Secrets never live here: the MQTT password comes from
``mqtt.password_env`` or ``mqtt.password_file`` (see :func:`edge.mqtt.read_password`).
"""
from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from edge.capture import CaptureOptions, parse_source, redact
from edge.configfile import ConfigError, StrictModel
from edge.events import EventsConfig
from edge.frigate import FrigateConfig
from edge.homeassistant import HomeAssistantConfig
from edge.mqtt import MqttConfig
from edge.outbox import OutboxConfig
from edge.smoother import SmootherParams
from edge.snapshots import SnapshotConfig
from edge.topics import check_prefix

BackendKind = Literal["auto", "onnxruntime", "openvino", "tensorrt"]
DEFAULT_PREFIX = "cplvad/{device}"


class RuntimeConfig(StrictModel):
    """How the models run."""

    backend: BackendKind = Field("onnxruntime", description="'onnxruntime' (any machine), 'openvino' (x86 CPUs; "
                                 "pip install 'cplvad-edge[openvino]'), 'tensorrt' (Jetson engines built by `make "
                                 "engine`, next to the bundle's ONNX files) or 'auto' (openvino where installed, "
                                 "else onnxruntime)")
    providers: list[str] = Field(["cpu"], description="ONNX Runtime providers in priority order: cpu, cuda, "
                                 "tensorrt or auto")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime / OpenVINO inference threads per model "
                                "(None: one per core)")
    precision: Literal["fp32", "int8"] = Field("fp32", description="ONNX Runtime: 'int8' runs the calibrated u8s8 "
                                               "models where they passed the accuracy gate (`make calibrate`), float "
                                               "elsewhere; OpenVINO: the same with the s8s8 models; TensorRT: the "
                                               "best engine built for this GPU")
    openvino_precision: Literal["auto", "f32", "bf16"] = Field("auto", description="OpenVINO: the float layers' "
                                                               "compute precision; auto = bf16 where the CPU has "
                                                               "AMX or AVX512-BF16, else f32")
    openvino_cache: Path | None = Field(None, description="OpenVINO: folder of compiled models, so a restart "
                                        "skips compilation (None: ~/.cache/cplvad/openvino)")
    clip_batch: int = Field(8, ge=1, le=256, description="frames encoded together, across cameras, at most")
    encode_every: int | None = Field(None, ge=1, le=16, description="expected snippet.encode_every of the bundle "
                                     "(None: take the bundle's); a different bundle is refused")


class SensitivityConfig(StrictModel):
    """Alert sensitivity of the causal smoother; null keeps the bundle's value (its manifest's smoother)."""

    theta_on: float | None = Field(None, gt=0, le=1, description="an event opens on scores >= theta_on (higher: "
                                   "fewer alerts); null: the bundle's")
    theta_off: float | None = Field(None, gt=0, le=1, description="an open event stays open on scores >= "
                                    "theta_off (<= theta_on); null: the bundle's")
    m: int | None = Field(None, ge=1, description="snippets over theta_on before an event opens; null: the bundle's")
    g: int | None = Field(None, ge=1, description="snippets under the threshold that close an event; null: the "
                          "bundle's")

    def overrides(self) -> dict[str, float | int]:
        return {k: v for k, v in self.model_dump().items() if k in SENSITIVITY_KEYS and v is not None}


SENSITIVITY_KEYS = ("theta_on", "theta_off", "m", "g")


class SmootherConfig(SensitivityConfig):
    """Alert sensitivity for every camera, and per camera (``cameras: {door: {theta_on: 0.8}}``).

    A camera's values: its own, else these, else the bundle's; a theta_off given nowhere is the bundle's, capped
    at the camera's theta_on.
    """

    cameras: dict[str, SensitivityConfig] = Field({}, description="per camera name: theta_on / theta_off / m / g "
                                                  "overriding the values above for that camera")

    def params_for(self, camera: str, bundle: SmootherParams) -> SmootherParams:
        """``bundle``'s smoother with this section's values, then ``camera``'s own; ConfigError names the keys."""
        own = self.cameras.get(camera)
        values = {**self.overrides(), **(own.overrides() if own is not None else {})}
        if "theta_on" in values and "theta_off" not in values:  # the bundle's theta_off, capped at theta_on
            values["theta_off"] = min(bundle.theta_off, values["theta_on"])
        try:
            return dataclasses.replace(bundle, **values)
        except ValueError:  # only theta_off > theta_on is left: each value alone was validated
            def origin(key: str) -> str:
                if own is not None and key in own.overrides():
                    return f"smoother.cameras.{camera}.{key}"
                return f"smoother.{key}" if key in values else "the bundle's manifest"

            on, off = values.get("theta_on", bundle.theta_on), values.get("theta_off", bundle.theta_off)
            raise ConfigError(f"camera {camera!r}: theta_on={on} ({origin('theta_on')}) < theta_off={off} "
                              f"({origin('theta_off')}); expected theta_off <= theta_on") from None


class StatsConfig(StrictModel):
    """Periodic reporting."""

    interval_s: float = Field(10.0, gt=0, description="seconds between <prefix>/stats messages (and stats logs)")
    state_interval_s: float = Field(1.0, gt=0, description="seconds between retained <camera>/state updates")


class EdgeConfig(StrictModel):
    """Everything ``edge/run.py`` needs; see configs/edge/default.yaml for a commented example."""

    device: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="device name in topics, client id "
                               "and events: letters, digits, '_', '.', '-' (None: the host name)")
    bundle: Path = Field(Path("bundle"), description="model bundle folder (manifest.json, ONNX files, text "
                         "embeddings)")
    cameras: list[str] = Field([], description="camera sources, '[name=]source': V4L2 index, RTSP/HTTP URL, video "
                               "file, csi://N, gst:<pipeline>")
    jsonl: Path | None = Field(None, description="also append every event as one JSON line to this file")
    shutdown_timeout_s: float = Field(5.0, ge=0, description="at shutdown, how long to wait for the broker to "
                                      "acknowledge buffered events (they stay in the outbox otherwise)")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    capture: CaptureOptions = Field(default_factory=CaptureOptions)
    mqtt: MqttConfig = Field(default_factory=lambda: MqttConfig(prefix=DEFAULT_PREFIX))
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    smoother: SmootherConfig = Field(default_factory=SmootherConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    frigate: FrigateConfig = Field(default_factory=FrigateConfig)

    @field_validator("cameras")
    @classmethod
    def _cameras_parse(cls, value: list[str]) -> list[str]:
        names: dict[str, str] = {}
        for source in value:
            spec = parse_source(source)  # ValueError names the source
            if spec.name in names:
                raise ValueError(f"cameras {redact(names[spec.name])!r} and {redact(source)!r} are both named "
                                 f"{spec.name!r}; name them apart with 'name=source'")
            names[spec.name] = source
        return value

    @model_validator(mode="after")
    def _sensitivity_cameras_exist(self) -> EdgeConfig:
        names = [parse_source(c).name for c in self.cameras]
        for camera in self.smoother.cameras:
            if camera not in names:
                raise ValueError(f"smoother.cameras.{camera}: no camera is named {camera!r} (cameras: "
                                 f"{', '.join(names) or 'none'}); name one with --camera {camera}=SOURCE")
        on, off = self.smoother.theta_on, self.smoother.theta_off
        if on is not None and off is not None and off > on:
            raise ValueError(f"smoother.theta_off={off} > smoother.theta_on={on}; expected theta_off <= theta_on")
        for camera, own in self.smoother.cameras.items():
            on, off = own.theta_on or self.smoother.theta_on, own.theta_off or self.smoother.theta_off
            if on is not None and off is not None and off > on:
                raise ValueError(f"smoother.cameras.{camera}: theta_off={off} > theta_on={on}; expected "
                                 "theta_off <= theta_on")
        return self

    @property
    def device_name(self) -> str:
        return self.device or socket.gethostname().split(".")[0] or "edge"

    @property
    def mqtt_prefix(self) -> str:
        """The topic prefix with ``{device}`` filled in (the default is ``cplvad/<device>``)."""
        prefix = self.mqtt.prefix if "prefix" in self.mqtt.model_fields_set else DEFAULT_PREFIX
        return check_prefix(prefix.replace("{device}", self.device_name))

    def resolved_snapshots(self) -> SnapshotConfig:
        """``snapshots`` with its folder resolved (None: ``snapshots/`` beside the outbox)."""
        folder = self.snapshots.dir or Path(self.outbox.path).parent / "snapshots"
        return self.snapshots.model_copy(update={"dir": folder})

    def resolved_mqtt(self) -> MqttConfig:
        """``mqtt`` with the final prefix (what the publisher gets)."""
        return MqttConfig.model_validate({**self.mqtt.model_dump(), "prefix": self.mqtt_prefix})

    def public_dict(self) -> dict[str, Any]:
        """The resolved config as printed and logged: defaults filled in, credentials in URLs masked.

        The config never holds the MQTT password itself (only where to read it), so nothing else is secret.
        """
        data = self.model_dump(mode="json")
        data["device"] = self.device_name
        data["cameras"] = [redact(c) for c in self.cameras]
        data["mqtt"]["prefix"] = self.mqtt_prefix
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.public_dict(), sort_keys=False)
