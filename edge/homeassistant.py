"""Home Assistant MQTT discovery: the device and its cameras appear as entities without any YAML in HA.

Opt-in (``homeassistant.discovery: true``). Per camera, retained configs on
``<ha prefix>/<component>/<node id>/<object id>/config`` (HA's documented discovery topic) for:

- ``binary_sensor`` "<camera> anomaly": ON while an event is open (``active`` of the retained ``<camera>/state``);
- ``sensor`` "<camera> anomaly score": the newest smoothed score (``score`` of ``<camera>/state``);
- ``event`` "<camera> alert": fires on each event ``start`` with the category as ``event_type`` (from
  ``<camera>/events``; other message types render to an empty payload, which HA ignores);
- ``image`` "<camera> snapshot": the JPEG of the latest alert (``<camera>/snapshot``), when snapshots are on.

All entities belong to one HA device (the box) and follow ``<prefix>/available`` (``online`` / ``offline``, our
last will). The config topics published are recorded in a small JSON file beside the outbox; on the next start a
camera that left the config gets empty retained payloads on its config topics, which removes its entities from HA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from edge.configfile import StrictModel
from edge.topics import TopicPrefix, Topics

log = logging.getLogger(__name__)

STATE_FILE = "homeassistant-discovery.json"
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]+")


class HomeAssistantConfig(StrictModel):
    """Home Assistant MQTT discovery (the ``homeassistant`` section of the edge config)."""

    discovery: bool = Field(False, description="publish retained discovery configs so HA creates the entities")
    prefix: TopicPrefix = Field("homeassistant", description="HA's discovery prefix (HA's MQTT setting, default "
                        "'homeassistant')")


def discovery_id(name: str) -> str:
    """``name`` as a discovery node / object id (``[a-zA-Z0-9_-]``, HA's rule); a name that had to change gets
    ``_`` + 6 hex of its sha1, so two names never share an id."""
    slug = _NOT_ID.sub("_", name).strip("_")
    if slug == name and name:
        return name
    return f"{slug or 'x'}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def device_block(device: str, model: str, sw_version: str) -> dict[str, Any]:
    """The HA device entry of the box, shared by all its entities."""
    return {"identifiers": [f"cplvad_{discovery_id(device)}"], "name": f"CPL-VAD {device}",
            "manufacturer": "CPL-VAD Edge", "model": model, "sw_version": sw_version}


def camera_configs(ha_prefix: str, topics: Topics, device: str, camera: str, classes: Sequence[str],
                   model: str, sw_version: str, snapshots: bool) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config of one camera's entities (see the module docstring)."""
    node, cam = discovery_id(device), discovery_id(camera)
    common = {
        "device": device_block(device, model, sw_version),
        "origin": {"name": "cplvad-edge", "sw_version": sw_version},
        "availability_topic": topics.available,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    entities: dict[str, tuple[str, dict[str, Any]]] = {
        "anomaly": ("binary_sensor", {
            "name": f"{camera} anomaly", "device_class": "safety",
            "state_topic": topics.state(camera),
            "value_template": "{{ 'ON' if value_json.active else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF",
            "json_attributes_topic": topics.state(camera),
        }),
        "score": ("sensor", {
            "name": f"{camera} anomaly score", "state_topic": topics.state(camera),
            "value_template": "{{ value_json.score }}", "state_class": "measurement",
            "suggested_display_precision": 2, "icon": "mdi:alert-decagram-outline",
        }),
        "alert": ("event", {
            "name": f"{camera} alert", "state_topic": topics.events(camera),
            "event_types": list(classes[1:]),  # class 0 (normal) is never an event's category
            "value_template": "{% if value_json.type == 'start' %}{{ {'event_type': value_json.category, "
                              "'score': value_json.peak_score, 'event_id': value_json.event_id, "
                              "'camera': value_json.camera} | tojson }}{% endif %}",
        }),
    }
    if snapshots:
        entities["snapshot"] = ("image", {"name": f"{camera} snapshot", "image_topic": topics.snapshot(camera),
                                          "content_type": "image/jpeg"})
    configs = {}
    for key, (component, config) in entities.items():
        object_id = f"{cam}_{key}"
        configs[f"{ha_prefix}/{component}/{node}/{object_id}/config"] = {
            **config, "unique_id": f"cplvad_{node}_{object_id}", **common}
    return configs


def read_published(path: Path) -> tuple[set[str], set[str]]:
    """(config topics published, config topics removed) recorded at ``path``; empty sets when it is absent or
    unreadable (logged)."""
    try:
        data = json.loads(path.read_text())
        return set(data.get("published", [])), set(data.get("removed", []))
    except FileNotFoundError:
        return set(), set()
    except (OSError, ValueError, AttributeError) as err:
        log.warning("Home Assistant: cannot read %s (%s); cameras removed earlier keep their entities", path, err)
        return set(), set()


def announce(configs: dict[str, dict[str, Any]], state_path: Path,
             publish_retained: Callable[[str, bytes], None]) -> list[str]:
    """Publish ``configs`` retained, remove (empty retained payload) the configs published before and absent
    now, and record both at ``state_path``; returns the topics removed.

    Removed topics stay in the record and are cleared again at every start (an empty retained message is
    harmless), so a removal that never reached the broker is not forgotten.
    """
    published, removed = read_published(state_path)
    gone = sorted((published | removed) - set(configs))
    for topic in gone:
        publish_retained(topic, b"")
    for topic, config in sorted(configs.items()):
        publish_retained(topic, json.dumps(config, separators=(",", ":")).encode())
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"published": sorted(configs), "removed": gone}, indent=1))
    os.replace(tmp, state_path)
    if gone:
        log.info("Home Assistant: removed %d entity config(s) of cameras no longer configured", len(gone))
    log.info("Home Assistant: %d entity config(s) announced", len(configs))
    return gone
