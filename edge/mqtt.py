"""MQTT delivery of a device's events, camera status, state and statistics (paho-mqtt 2.x).

Events go through the durable :class:`edge.outbox.Outbox`: ``publish_event`` stores the message, a sender
thread publishes stored messages in order (QoS 1) within an in-flight window while connected, and the broker's
PUBACK deletes them. Messages in flight when the connection drops are re-sent by paho on reconnect, and newer
ones follow only once those are acknowledged, so the order holds; after a restart the outbox is replayed from
its oldest message. An event is lost only if the outbox overflows (counted and logged).

Availability follows the usual last-will pattern: the will sets ``<prefix>/available`` to ``offline``
(retained) when the device vanishes; every successful connect publishes ``online`` (retained) and the latest
retained camera status and state; ``close()`` publishes the latest retained status and state, the pending
stats and then ``offline`` itself, and waits (bounded) until the broker has them (the ``offline`` PUBACK: a
broker handles one connection's messages in order) before it disconnects.

MQTT 5 is tried first; a broker that refuses it ("Unsupported protocol version", i.e. an MQTT 3.1.1 CONNACK
code 1) gets MQTT 3.1.1 from then on. Refused connections (bad credentials, TLS failures, unreachable broker)
are logged as errors with the reason and retried with exponential backoff; events keep buffering meanwhile.
The password is passed in as a value (see :func:`read_password`) and never logged.

Threads: paho's network thread runs the callbacks, which only record what happened; the sender thread is the
only one that publishes, so no lock is held while calling into paho.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, field_validator

from edge.configfile import StrictModel
from edge.outbox import Outbox
from edge.topics import Topics, check_prefix

log = logging.getLogger(__name__)

# MQTT 5 CONNACK reason codes (paho maps the MQTT 3.1.1 return codes 1, 4, 5 onto them)
UNSUPPORTED_PROTOCOL_VERSION = 132
BAD_LOGIN = (134, 135)  # bad user name or password, not authorized
ONLINE, OFFLINE = "online", "offline"
Protocol = Literal["auto", "5", "3.1.1"]


class TlsConfig(StrictModel):
    ca_certs: Path | None = Field(
        None, description="CA bundle that signed the broker's certificate (None: system CAs)"
    )
    certfile: Path | None = Field(None, description="client certificate (PEM) for mutual TLS")
    keyfile: Path | None = Field(None, description="client private key (PEM) for mutual TLS")
    insecure: bool = Field(False, description="skip the broker hostname check (testing only)")


class MqttConfig(StrictModel):
    """Connection to the MQTT broker that the VMS subscribes to."""

    host: str = Field("localhost", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual for TLS)")
    prefix: str = Field("cplvad", description="topic prefix, one or more levels, e.g. 'cplvad/device-01'")
    client_id: str | None = Field(None, description="MQTT client id; None: 'cplvad-<device>'")
    protocol: Protocol = Field("auto", description="'auto' tries MQTT 5 then 3.1.1; or force '5' / '3.1.1'")
    keepalive_s: int = Field(
        30, ge=1, le=65535, description="keepalive; the will fires after ~1.5x this silence"
    )
    username: str | None = Field(None, description="user name, if the broker requires one")
    password_env: str | None = Field(None, description="environment variable holding the password")
    password_file: Path | None = Field(None, description="file holding the password (first line)")
    tls: TlsConfig | None = Field(None, description="TLS settings; None: plain TCP")
    reconnect_min_s: float = Field(1.0, gt=0, description="first reconnect delay, doubled per failure")
    reconnect_max_s: float = Field(60.0, gt=0, description="longest reconnect delay")
    inflight: int = Field(
        20, ge=1, le=65535, description="events published and not yet acknowledged, at most"
    )
    close_timeout_s: float = Field(5.0, ge=0, description="how long close() waits to deliver buffered events")

    @field_validator("prefix")
    @classmethod
    def _prefix_ok(cls, value: str) -> str:
        return check_prefix(value)


def read_password(config: MqttConfig) -> str | None:
    """The broker password from ``password_env`` or ``password_file`` (never from the YAML itself)."""
    if config.password_env and config.password_file:
        raise ValueError("mqtt.password_env and mqtt.password_file are both set; expected at most one")
    if config.password_env:
        value = os.environ.get(config.password_env)
        if value is None:
            raise ValueError(
                f"mqtt.password_env={config.password_env!r}: that environment variable is not set"
            )
        forget_environment_variable(config.password_env)
        return value
    if config.password_file:
        try:
            mode = config.password_file.stat().st_mode
        except OSError as err:
            raise ValueError(
                f"mqtt.password_file={str(config.password_file)!r}: cannot read it ({err.strerror})"
            ) from None
        if mode & 0o077:
            raise ValueError(
                f"mqtt.password_file={str(config.password_file)!r} can be read by other users (mode "
                f"{stat.S_IMODE(mode):04o}); make it private: chmod 600 {config.password_file}"
            )
        try:
            lines = config.password_file.read_text().splitlines()
        except OSError as err:
            raise ValueError(
                f"mqtt.password_file={str(config.password_file)!r}: cannot read it ({err.strerror})"
            ) from None
        return lines[0] if lines else ""
    return None


def forget_environment_variable(name: str) -> None:
    """Remove ``name`` from this process's environment, and on Linux blank its value in the environment block
    that ``/proc/<pid>/environ`` shows (``unsetenv`` alone leaves the start-up bytes there)."""
    value = os.environ.pop(name, None)
    if value is None or not sys.platform.startswith("linux"):
        return
    entry = f"{name}={value}".encode()
    try:
        with open("/proc/self/environ", "rb") as f:
            block = b"\0" + f.read()
        found = block.find(b"\0" + entry + b"\0")
        if found < 0:
            return  # set after start-up: never in the block
        with open("/proc/self/stat", "rb") as f:
            env_start = int(f.read().rsplit(b")", 1)[1].split()[47])  # field 50 of proc(5) stat
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(env_start + found + len(name) + 1)
            mem.write(b"\0" * (len(entry) - len(name) - 1))
    except (OSError, ValueError, IndexError) as err:
        log.warning("could not blank %s in /proc/self/environ (%s); it is removed from the environment", name, err)


def should_fall_back(requested: Protocol, current: MQTTProtocolVersion, reason: ReasonCode) -> bool:
    """Whether a refused MQTT 5 connect should be retried with MQTT 3.1.1."""
    return (
        requested == "auto"
        and current == MQTTProtocolVersion.MQTTv5
        and reason.value == UNSUPPORTED_PROTOCOL_VERSION
    )


def _json_bytes(value: Any) -> bytes:
    """Payload bytes: bytes as they are, text as UTF-8, anything else as compact JSON (NaN refused)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _describe_connect_error(err: BaseException | None) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate check failed: {err.verify_message} (check mqtt.tls.ca_certs and the host name)"
        )
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake failed: {err.reason or err} (check mqtt.tls and that the port speaks TLS)"
    if isinstance(err, OSError):
        return f"cannot reach the broker: {err.strerror or err}"
    return f"cannot connect: {err}"


class MqttPublisher:
    """Publishes a device's messages to one broker; see the module docstring.

    ``start()`` connects in the background (it never blocks on the network); ``close()`` flushes and
    disconnects. The outbox belongs to the caller, who closes it after the publisher. ``device`` names the
    default client id; the password comes from :func:`read_password`.
    """

    def __init__(self, config: MqttConfig, outbox: Outbox, device: str, password: str | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.topics = Topics(config.prefix)
        self.client_id = config.client_id or f"cplvad-{device}"
        self._password = password
        self._protocol = (
            MQTTProtocolVersion.MQTTv311 if config.protocol == "3.1.1" else MQTTProtocolVersion.MQTTv5
        )
        self._cond = threading.Condition()
        # state shared with paho's callbacks, guarded by self._cond
        self._connected = False
        self._announce = False  # a connect happened: publish online and the retained topics
        self._draining = False  # after a reconnect: wait for paho's re-sent messages before newer ones
        self._fall_back = False
        self._results: dict[int, ReasonCode] = {}  # mid -> PUBACK reason (or send result for QoS 0)
        self._inflight: dict[int, int] = {}  # mid -> outbox id
        self._other_mids: set[int] = set()  # mids of messages that are not in the outbox
        self._sent_up_to = 0  # highest outbox id handed to this client
        self._retained: dict[str, tuple[bytes, int]] = {}  # topic -> latest (payload, qos)
        self._dirty: set[str] = set()
        self._stats: bytes | None = None
        self._wake = False
        self._stopping = False
        self._last_problem: str | None = None
        self._client = self._new_client()
        self._thread = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    # ----------------------------------------------------------------------------------------------- public
    def start(self) -> None:
        log.info(
            "MQTT: connecting to %s:%d as %r (prefix %r, %s)",
            self.config.host,
            self.config.port,
            self.client_id,
            self.config.prefix,
            self.protocol_name,
        )
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
        self._client.loop_start()
        self._thread.start()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def protocol_name(self) -> str:
        return "MQTT 5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "MQTT 3.1.1"

    def publish_event(self, camera: str, payload: dict[str, Any]) -> int:
        """Store an event durably, then publish it (QoS 1) when the window allows; returns its outbox id.

        The message, its ``seq`` and the camera's open event (this message unless it is an ``end``) are stored
        in one transaction (:meth:`edge.outbox.Outbox.put_event`), so a restart can close what a crash left open.
        """
        open_event = None if payload["type"] == "end" else payload
        message_id = self.outbox.put_event(camera, self.topics.events(camera), _json_bytes(payload),
                                           seq=int(payload["seq"]), open_event=open_event)
        self._notify()
        return message_id

    def publish_status(self, camera: str, status: dict[str, Any] | str) -> None:
        """Retained camera status (QoS 1); the latest one is re-published after every reconnect."""
        self._set_retained(self.topics.status(camera), _json_bytes(status), qos=1)

    def publish_state(self, camera: str, state: dict[str, Any]) -> None:
        """Retained current score/state (QoS 0, latest wins, re-published after every reconnect)."""
        self._set_retained(self.topics.state(camera), _json_bytes(state), qos=0)

    def publish_retained(self, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
        """Any retained message of the device (discovery configs, snapshots; an empty payload clears the topic);
        the latest per topic is re-published after every reconnect."""
        self._set_retained(topic, _json_bytes(payload), qos=qos)

    def publish_durable(self, topic: str, payload: dict[str, Any]) -> int:
        """A JSON message (not an event of ours, e.g. its Frigate-shaped copy) through the outbox, in order with
        the events (QoS 1, not retained); returns its outbox id."""
        message_id = self.outbox.put(topic, _json_bytes(payload), qos=1)
        self._notify()
        return message_id

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Periodic statistics (QoS 0, not buffered: dropped while disconnected, latest wins)."""
        with self._cond:
            self._stats = _json_bytes(stats)
            self._wake = True
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every stored event is acknowledged; False if some are still pending at ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.outbox.depth() > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver the buffered events within ``timeout``, then the final status, stats and ``offline``;
        disconnect."""
        timeout = self.config.close_timeout_s if timeout is None else timeout
        delivered = self.flush(timeout) if self.connected else self.outbox.depth() == 0
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        if self.connected:
            self._publish_final(min(max(timeout, 0.5), 2.0))
        self._client.disconnect()
        self._client.loop_stop()
        depth = self.outbox.depth()
        if not delivered and depth:
            log.warning(
                "MQTT: closed with %d event(s) still in the outbox %s; they are sent on the next start",
                depth,
                self.outbox.path,
            )
        else:
            log.info("MQTT: closed")

    def _publish_final(self, timeout: float) -> None:
        """Publish the retained topics and stats the stopped sender has not sent, then ``offline``; wait up to
        ``timeout`` s for the broker to have them: PUBACK for QoS 1, written to the socket for QoS 0."""
        with self._cond:
            topics = self._dirty | (set(self._retained) if self._announce else set())
            messages = [(topic, *self._retained[topic], True) for topic in sorted(topics)]
            self._dirty.clear()
            if self._stats is not None:
                messages.append((self.topics.stats, self._stats, 0, False))
                self._stats = None
        messages.append((self.topics.available, OFFLINE.encode(), 1, True))
        sent = []
        for topic, payload, qos, retain in messages:
            try:
                sent.append((topic, self._client.publish(topic, payload, qos=qos, retain=retain)))
            except (RuntimeError, ValueError) as err:
                log.warning("MQTT: could not publish %s on close: %s", topic, err)
        deadline = time.monotonic() + timeout
        for topic, info in sent:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as err:
                log.warning("MQTT: could not publish %s on close: %s", topic, err)
                continue
            if not info.is_published():
                log.warning("MQTT: %s not confirmed by the broker within %.1f s of closing", topic, timeout)

    # ----------------------------------------------------------------------------------------------- client
    def _new_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self._protocol)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(0)  # no paho limit: the event window is self._inflight (plus status)
        client.will_set(self.topics.available, OFFLINE, qos=1, retain=True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, self._password)
        if cfg.tls is not None:
            tls = cfg.tls
            try:
                client.tls_set(
                    ca_certs=_opt(tls.ca_certs), certfile=_opt(tls.certfile), keyfile=_opt(tls.keyfile)
                )
            except (OSError, ssl.SSLError) as err:
                raise ValueError(
                    f"mqtt.tls: cannot load the certificates/key ({err}); check ca_certs={tls.ca_certs}, "
                    f"certfile={tls.certfile}, keyfile={tls.keyfile}"
                ) from None
            client.tls_insecure_set(tls.insecure)
        return client

    def _fall_back_to_311(self) -> None:
        """Replace the MQTT 5 client by an MQTT 3.1.1 one (the broker refused version 5)."""
        old = self._client
        old.loop_stop()
        self._protocol = MQTTProtocolVersion.MQTTv311
        with self._cond:
            self._results.clear()
            self._inflight.clear()
            self._other_mids.clear()
            self._sent_up_to = 0
        self._client = self._new_client()
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
        self._client.loop_start()

    # ------------------------------------------------------------------------------- callbacks (paho thread)
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            if should_fall_back(self.config.protocol, self._protocol, reason):
                log.warning(
                    "MQTT: %s:%d does not speak MQTT 5 (%s); falling back to MQTT 3.1.1",
                    self.config.host,
                    self.config.port,
                    reason,
                )
                with self._cond:
                    self._fall_back = True
                    self._wake = True
                    self._cond.notify_all()
                return
            hint = " (check mqtt.username and the password source)" if reason.value in BAD_LOGIN else ""
            self._report(
                f"broker {self.config.host}:{self.config.port} refused the connection: {reason}{hint}"
            )
            return
        log.info(
            "MQTT: connected to %s:%d (%s)%s",
            self.config.host,
            self.config.port,
            self.protocol_name,
            f"; {self.outbox.depth()} event(s) to deliver" if self.outbox.depth() else "",
        )
        with self._cond:
            self._last_problem = None
            self._connected = True
            self._announce = True
            self._draining = bool(self._inflight)
            self._wake = True
            self._cond.notify_all()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        err = sys.exc_info()[1]  # paho calls this inside its `except OSError` block
        self._report(f"{self.config.host}:{self.config.port}: {_describe_connect_error(err)}")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            log.warning(
                "MQTT: disconnected from %s:%d (%s); reconnecting, events are kept in the outbox",
                self.config.host,
                self.config.port,
                reason,
            )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties | None
    ) -> None:
        with self._cond:
            self._results[mid] = reason
            self._wake = True
            self._cond.notify_all()

    def _report(self, problem: str) -> None:
        """Log a connection problem as an error once, and its repetitions (every retry) at debug level."""
        with self._cond:
            repeated = problem == self._last_problem
            self._last_problem = problem
        if repeated:
            log.debug("MQTT: %s (still)", problem)
        else:
            log.error("MQTT: %s; retrying with backoff, events are kept in the outbox", problem)

    # -------------------------------------------------------------------------------------- sender thread
    def _notify(self) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wake or self._stopping, timeout=1.0)
                if self._stopping:
                    return
                self._wake = False
                fall_back, self._fall_back = self._fall_back, False
                acked, failed = self._take_results()
                announce, self._announce = self._announce, False
                if announce:
                    self._dirty.update(self._retained)
                connected = self._connected
                retained = [(t, *self._retained[t]) for t in self._dirty] if connected else []
                if connected:
                    self._dirty.clear()
                stats, self._stats = self._stats, None
            try:
                if fall_back:
                    self._fall_back_to_311()
                    continue
                if acked:
                    self.outbox.ack(*acked)
                for message_id, reason in failed:
                    log.error(
                        "MQTT: the broker refused outbox message %d (%s); it stays in the outbox and is "
                        "retried at the next start",
                        message_id,
                        reason,
                    )
                if announce:
                    self._publish_other(self.topics.available, ONLINE.encode(), qos=1, retain=True)
                for topic, payload, qos in retained:
                    self._publish_other(topic, payload, qos=qos, retain=True)
                if stats is not None and connected:
                    self._publish_other(self.topics.stats, stats, qos=0, retain=False)
                self._fill_window()
            except Exception:  # the sender must survive anything; the outbox keeps the events
                log.exception("MQTT: sender error; retrying")
                time.sleep(0.5)
                self._notify()
            with self._cond:
                self._cond.notify_all()  # flush() waits on the outbox depth

    def _take_results(self) -> tuple[list[int], list[tuple[int, ReasonCode]]]:
        """PUBACKs that match a published outbox message: (ids to delete, (id, reason) the broker refused)."""
        acked, failed = [], []
        for mid in list(self._results):
            if mid in self._inflight:
                reason = self._results.pop(mid)
                message_id = self._inflight.pop(mid)
                if reason.is_failure:
                    failed.append((message_id, reason))
                else:
                    acked.append(message_id)
            elif mid in self._other_mids:
                self._results.pop(mid)
                self._other_mids.discard(mid)
            # else: the PUBACK beat publish() returning; the mid is recorded on the next pass
        if not self._inflight:
            self._draining = False
        return acked, failed

    def _fill_window(self) -> None:
        """While connected, publish stored events after the last one handed over, as the window allows."""
        with self._cond:
            if not self._connected or self._draining:
                return
            room = self.config.inflight - len(self._inflight)
            after = self._sent_up_to
        if room <= 0:
            return
        properties = self._json_properties()
        for message in self.outbox.pending(room, after_id=after):
            info = self._client.publish(
                message.topic, message.payload, message.qos, message.retain, properties
            )
            with self._cond:
                self._inflight[info.mid] = message.id
                self._sent_up_to = message.id
                self._wake = True  # its PUBACK may already be in self._results

    def _publish_other(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        with self._cond:
            self._other_mids.add(info.mid)
            self._wake = True

    def _json_properties(self) -> Properties | None:
        if self._protocol != MQTTProtocolVersion.MQTTv5:
            return None
        properties = Properties(PacketTypes.PUBLISH)
        properties.PayloadFormatIndicator = 1  # UTF-8 text
        properties.ContentType = "application/json"
        return properties

    def _set_retained(self, topic: str, payload: bytes, qos: int) -> None:
        with self._cond:
            self._retained[topic] = (payload, qos)
            self._dirty.add(topic)
            self._wake = True
            self._cond.notify_all()


def _opt(path: Path | None) -> str | None:
    return str(path) if path is not None else None
