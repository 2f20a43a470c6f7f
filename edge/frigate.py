"""A Frigate-shaped copy of our events, for consumers written for Frigate's ``frigate/events`` topic.

Opt-in (``frigate.enabled: true``); published on ``frigate.topic`` through the outbox (durable, in order with
our events). Each of our messages becomes one Frigate message ``{"type", "before", "after"}``:

===============================  =====================================================================
Frigate                          ours
===============================  =====================================================================
``type`` new / update / end      ``type`` start / update / end
``id``                           ``event_id``
``camera``                       ``camera``
``label``                        ``category`` (the anomaly class; Frigate's is an object class)
``sub_label``                    null
``score`` / ``top_score``        ``score`` / ``peak_score`` (anomaly scores, 0..1)
``start_time`` / ``end_time``    ``start_time`` / ``end_time`` as epoch seconds (end null until the end)
``frame_time``                   ``detected_time`` (else ``start_time``) as epoch seconds
``has_snapshot``                 a ``snapshot`` reference was attached (image on ``<prefix>/<camera>/snapshot``)
``has_clip``                     false (no recordings)
``false_positive``, ``stationary``  false; ``current_zones`` / ``entered_zones`` empty
``box`` / ``region`` / ``area``  absent: an anomaly concerns the whole frame
``cplvad``                       our extras: ``event_id``, ``category_scores``, ``reason``, ``snapshot``
===============================  =====================================================================

``before`` is the previous ``after`` of the same event (for ``new``, and after a restart, ``before`` = ``after``).
Frigate's HTTP API (clips, thumbnails by event id) does not exist here, so integrations that call it, such as
Home Assistant's Frigate integration, get the MQTT messages only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from edge.configfile import StrictModel
from edge.topics import TopicPrefix

TYPES = {"start": "new", "update": "update", "end": "end"}


class FrigateConfig(StrictModel):
    """Frigate compatibility (the ``frigate`` section of the edge config)."""

    enabled: bool = Field(False, description="also publish each event in Frigate's frigate/events shape")
    topic: TopicPrefix = Field("frigate/events", description="topic of the Frigate-shaped copy (change it when a real "
                       "Frigate uses the same broker)")


def epoch(text: str | None) -> float | None:
    """ISO-8601 (``...Z``) -> epoch seconds; None stays None."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def frigate_object(message: dict[str, Any]) -> dict[str, Any]:
    """The Frigate tracked-object dict (``before`` / ``after``) of one of our event messages."""
    return {
        "id": message["event_id"],
        "camera": message["camera"],
        "frame_time": epoch(message.get("detected_time") or message["start_time"]),
        "label": message["category"],
        "sub_label": None,
        "score": message["score"],
        "top_score": message["peak_score"],
        "false_positive": False,
        "start_time": epoch(message["start_time"]),
        "end_time": epoch(message["end_time"]),
        "has_snapshot": "snapshot" in message,
        "has_clip": False,
        "stationary": False,
        "current_zones": [],
        "entered_zones": [],
        "cplvad": {"event_id": message["event_id"], "category_scores": message["category_scores"],
                   "reason": message.get("reason"), "snapshot": message.get("snapshot")},
    }


class FrigateSink:
    """Event sink: publishes the Frigate-shaped copy of each message; ``publish(topic, payload)`` is durable
    (``MqttPublisher.publish_durable``)."""

    def __init__(self, topic: str, publish: Callable[[str, dict[str, Any]], Any]) -> None:
        self.topic = topic
        self._publish = publish
        self._last: dict[str, dict[str, Any]] = {}  # event_id -> its last 'after'

    def convert(self, message: dict[str, Any]) -> dict[str, Any]:
        after = frigate_object(message)
        previous = self._last.get(message["event_id"])
        if previous is not None and previous["has_snapshot"]:
            after["has_snapshot"] = True  # an event keeps its image once it has one
        before = previous or after
        if message["type"] == "end":
            self._last.pop(message["event_id"], None)
        else:
            self._last[message["event_id"]] = after
        return {"type": TYPES[message["type"]], "before": before, "after": after}

    def publish(self, camera: str, payload: dict[str, Any]) -> None:
        self._publish(self.topic, self.convert(payload))
