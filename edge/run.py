"""Run the anomaly detector on the device: cameras in, events out over MQTT.

    cplvad run --camera 0 --bundle bundle/
    cplvad run --camera door=rtsp://user@10.0.0.5/stream --camera clip.mp4 --realtime --loop
    cplvad run --validate-config --config configs/edge/default.yaml

(``python edge/run.py`` and ``python -m edge.run`` are aliases.)

Settings come from ``--config`` (YAML, see configs/edge/default.yaml), then ``--set key=value`` overrides, then
the flags below. The MQTT password is read from ``mqtt.password_env`` or ``mqtt.password_file``, never from the
command line. SIGINT / SIGTERM stop the cameras, finish the work in flight, close open events (reason
``shutdown``), flush the outbox (``shutdown_timeout_s``), publish ``offline`` and exit 0. Under systemd
(``Type=notify``) the process reports READY, WATCHDOG pings from the processing loop, and STOPPING.
Exit codes: 0 done, 1 runtime failure, 2 bad configuration or bundle.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python edge/run.py): make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.backends.tensorrt import EngineMismatch, check_engines  # noqa: E402
from edge.bundle import BundleError, load_bundle  # noqa: E402
from edge.capture import check_file_source, parse_source  # noqa: E402
from edge.config import EdgeConfig  # noqa: E402
from edge.configfile import ConfigError, add_config_arguments, load_config, run_main  # noqa: E402
from edge.frigate import FrigateSink  # noqa: E402
from edge.homeassistant import STATE_FILE, announce, camera_configs  # noqa: E402
from edge.mqtt import MqttPublisher, read_password  # noqa: E402
from edge.outbox import Outbox, OutboxError  # noqa: E402
from edge.pipeline import (  # noqa: E402
    BundleMismatch,
    JsonlSink,
    MqttSink,
    Pipeline,
    camera_smoother_params,
    check_runtime_fit,
    open_models,
)
from edge.snapshots import Snapshotter  # noqa: E402

log = logging.getLogger("edge.run")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "edge" / "default.yaml"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# a bad config, bundle, camera file, engine or outbox: exit 2 (systemd does not restart on it)
USER_ERRORS = (ConfigError, BundleError, BundleMismatch, EngineMismatch, OutboxError, ValueError, FileNotFoundError)


class SystemdNotifier:
    """sd_notify over the ``NOTIFY_SOCKET`` datagram socket, without a dependency; a no-op outside systemd.

    ``watchdog()`` may be called often: it pings at most every WATCHDOG_USEC / 2.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        self.address = address
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        mine = pid is None or pid == str(os.getpid())
        self.watchdog_interval_s = int(usec) / 2e6 if usec and usec.isdigit() and mine else None
        self._last_ping = 0.0

    def notify(self, state: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), socket.MSG_DONTWAIT, self.address)  # never stall the loop
        except OSError as err:
            log.debug("sd_notify %r to %r failed: %s", state, self.address, err)

    def watchdog(self) -> None:
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")


SECRET_OPTION = re.compile(r"pas|pw|secret|token|key|cred|auth", re.IGNORECASE)


def hide_secrets(message: str, argv: Sequence[str]) -> str:
    """``message`` with the value of every secret-looking option in ``argv`` (``--mqtt-password X``,
    ``--token=X``) replaced by ``***``: argparse repeats unknown arguments and bad values in its errors."""
    secrets = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if not arg.startswith("-") or not SECRET_OPTION.search(name):
            continue
        if eq:
            secrets.append(value)
        elif i + 1 < len(argv):
            secrets.append(argv[i + 1])
    for secret in sorted(filter(None, set(secrets)), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


class QuietParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors never show what was given to a secret-looking option (a mistyped
    ``--mqtt-password hunter2`` is refused as ``unrecognized arguments: --mqtt-password ***``)."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: object = None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(self._argv, namespace)

    def error(self, message: str):  # type: ignore[override]
        super().error(hide_secrets(message, getattr(self, "_argv", sys.argv[1:])))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = QuietParser(prog="cplvad run", description=__doc__.split("\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, EdgeConfig, DEFAULT_CONFIG)
    p.add_argument("--camera", action="append", metavar="[NAME=]SOURCE",
                   help="camera: V4L2 index, RTSP/HTTP URL, video file, csi://N, gst:<pipeline> (repeatable; "
                        "replaces the config's cameras)")
    p.add_argument("--bundle", type=Path, help="model bundle folder")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt"],
                   help="inference backend (auto: openvino where installed, else onnxruntime)")
    p.add_argument("--precision", choices=["fp32", "int8"],
                   help="ONNX Runtime / OpenVINO: int8 runs the calibrated models that passed their gate "
                        "(make calibrate)")
    p.add_argument("--mqtt-host", help="MQTT broker host (TLS and credentials: in the config)")
    p.add_argument("--mqtt-port", type=int, help="MQTT broker port")
    p.add_argument("--device-name", help="device name in topics and events (default: host name)")
    p.add_argument("--jsonl", type=Path, help="also append every event to this JSON-lines file")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="files: pace at the file's frame rate (default: as fast as processed, losing nothing)")
    p.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None, help="files: loop forever")
    p.add_argument("--exit-when-done", action="store_true", help="exit once every camera has ended (files)")
    p.add_argument("--max-seconds", type=float, help="stop after this many seconds")
    p.add_argument("--validate-config", action="store_true",
                   help="check the config (and the bundle, cameras, password source), print it and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


FLAGS = {"cameras": "--camera", "bundle": "--bundle", "runtime.backend": "--backend",
         "runtime.precision": "--precision", "mqtt.host": "--mqtt-host", "mqtt.port": "--mqtt-port",
         "device": "--device-name", "jsonl": "--jsonl", "capture.realtime": "--realtime", "capture.loop": "--loop"}


def resolve_config(args: argparse.Namespace) -> EdgeConfig:
    """The config file + ``--set`` overrides + flags (as overrides too); ConfigError names the bad key."""
    flags = {
        "cameras": args.camera, "bundle": args.bundle, "runtime.backend": args.backend,
        "runtime.precision": args.precision,
        "mqtt.host": args.mqtt_host, "mqtt.port": args.mqtt_port, "device": args.device_name,
        "jsonl": args.jsonl, "capture.realtime": args.realtime, "capture.loop": args.loop,
    }
    # JSON is YAML: each value reaches the config exactly as given (strings stay strings)
    overrides = [(f"{key}={json.dumps(str(v) if isinstance(v, Path) else v)}", f"{FLAGS.get(key, key)} {v}")
                 for key, v in flags.items() if v is not None]
    return load_config(EdgeConfig, args.config, [*args.overrides, *overrides])


def check_file_cameras(config: EdgeConfig) -> None:
    """Refuse file cameras that cannot be read (with --exit-when-done they would be retried forever)."""
    for source in config.cameras:
        spec = parse_source(source)
        problem = check_file_source(spec)
        if problem is not None:
            raise ConfigError(f"camera {spec.name}: {spec.display}: {problem}")


def validate(config: EdgeConfig) -> None:
    """Everything that can be checked before starting: password source, bundle, bundle vs runtime, and for
    ``runtime.backend: tensorrt`` TensorRT itself and the engines this device would run."""
    read_password(config.mqtt)  # raises when the source is missing; the value is never shown
    if not config.cameras:
        raise ConfigError("no camera: give --camera SOURCE or list `cameras:` in the config")
    bundle = load_bundle(config.bundle)
    check_runtime_fit(bundle, config.runtime)
    if config.runtime.backend == "tensorrt":
        check_engines(bundle.path, bundle.manifest.files)
    camera_smoother_params(config, bundle.smoother_params())  # the alert sensitivity over the bundle's


def run(config: EdgeConfig, args: argparse.Namespace) -> int:
    device = config.device_name
    try:  # everything that a bad config or bundle can break: exit code 2
        bundle = load_bundle(config.bundle)
        if config.runtime.backend == "tensorrt":  # TensorRT and the engines, before anything starts
            check_engines(bundle.path, bundle.manifest.files)
        models = open_models(bundle, config.runtime)
        password = read_password(config.mqtt)
        if not config.cameras:
            raise ConfigError("no camera: give --camera SOURCE or list `cameras:` in the config")
        camera_smoother_params(config, models.smoother)
        outbox = Outbox.from_config(config.outbox)
    except USER_ERRORS as err:
        log.error("%s", err)
        return EXIT_CONFIG
    try:
        jsonl = JsonlSink(config.jsonl) if config.jsonl is not None else None
    except OSError as err:
        outbox.close()
        log.error("jsonl %s: cannot open it for appending (%s)", config.jsonl, err.strerror)
        return EXIT_CONFIG
    publisher = MqttPublisher(config.resolved_mqtt(), outbox, device, password)
    sinks = [MqttSink(publisher)] + ([jsonl] if jsonl is not None else [])
    if config.frigate.enabled:
        sinks.append(FrigateSink(config.frigate.topic, publisher.publish_durable))
    try:
        snapshots = (Snapshotter(config.resolved_snapshots(), publisher.topics.snapshot,
                                 publisher.publish_retained) if config.snapshots.enabled else None)
    except OSError as err:
        outbox.close()
        log.error("snapshots.dir %s: cannot create it (%s)", config.resolved_snapshots().dir, err.strerror)
        return EXIT_CONFIG
    pipeline = Pipeline.from_config(config, models, sinks=sinks, publisher=publisher, snapshots=snapshots,
                                    next_seq=lambda camera: functools.partial(outbox.next_seq, camera))
    if config.homeassistant.discovery:
        configs: dict[str, dict] = {}
        for camera in pipeline.streams:
            configs.update(camera_configs(config.homeassistant.prefix, publisher.topics, device, camera,
                                          models.classes, models.info.name, models.info.version,
                                          snapshots=snapshots is not None))
        announce(configs, Path(config.outbox.path).parent / STATE_FILE, publisher.publish_retained)
    pipeline.close_left_open(outbox.open_events())  # events a killed run left open: end them (restart)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    notifier = SystemdNotifier()
    log.info("device %s: %d camera(s), bundle %s (%s %s, %s), backend %s, MQTT %s:%d prefix %r", device,
             len(pipeline.streams), bundle.path, models.info.name, models.info.version, models.info.precision,
             config.runtime.backend, config.mqtt.host, config.mqtt.port, config.mqtt_prefix)
    publisher.start()
    try:
        notifier.notify("READY=1")
        pipeline.run(stop, exit_when_done=args.exit_when_done, max_seconds=args.max_seconds,
                     on_tick=notifier.watchdog)
    finally:
        notifier.notify("STOPPING=1")
        publisher.close(timeout=config.shutdown_timeout_s)
        outbox.close()
        if jsonl is not None:
            jsonl.close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = resolve_config(args)
        if args.exit_when_done:
            check_file_cameras(config)
        if args.validate_config:
            validate(config)
            sys.stdout.write(config.to_yaml())
            return EXIT_OK
    except USER_ERRORS as err:
        log.error("%s", err)
        return EXIT_CONFIG
    try:
        return run(config, args)
    except Exception:
        log.exception("the edge runtime failed")
        return EXIT_FAILED


if __name__ == "__main__":  # python edge/run.py: an alias of `cplvad run`
    sys.exit(run_main(main, prog="cplvad run"))
