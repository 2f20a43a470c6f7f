"""MQTT topic layout of a device and the escaping of names (camera ids) used as topic levels.

Layout under one ``prefix`` (one or more levels, e.g. ``cplvad/jetson-07``)::

    <prefix>/available          retained "online" / "offline" (last will)
    <prefix>/<camera>/status    retained camera status
    <prefix>/<camera>/events    event messages (QoS 1, from the outbox)
    <prefix>/<camera>/state     retained current score / state
    <prefix>/<camera>/snapshot  retained JPEG of the camera's latest alert (snapshots on)
    <prefix>/stats              periodic runtime statistics

A camera name becomes exactly one topic level through :func:`sanitise_topic_part`, which percent-escapes the
characters MQTT forbids or reserves in a level, so that two different names never share a topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

# Characters that may not appear in one topic level: the separator, the wildcards, NUL (MQTT 3.1.1 and 5,
# section 4.7), and '%', the escape character itself, so that the mapping stays reversible.
_RESERVED = frozenset("/+#%\0")
EMPTY_PART = "%"  # the empty name; no escaped name is a lone '%', so it collides with nothing
_ESCAPE = re.compile(r"%([0-9A-F]{2})|%u([0-9A-F]{4})")


def _must_escape(ch: str) -> bool:
    code = ord(ch)
    # MQTT: topic names SHOULD NOT hold control characters and MUST NOT hold UTF-16 surrogates.
    return ch in _RESERVED or code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


def sanitise_topic_part(name: str) -> str:
    """Turn ``name`` into one safe MQTT topic level, injectively.

    Characters that may not appear in a level (``/ + # NUL``), control characters, lone surrogates and ``%``
    become ``%XX`` (code point < 256) or ``%uXXXX``; everything else is kept, so ordinary names such as
    ``front-door`` or ``Kamera 2`` stay as they are. The empty name becomes ``%``. The mapping is
    deterministic and reversible (:func:`restore_topic_part`), hence collision-free.
    """
    if name == "":
        return EMPTY_PART
    out = []
    for ch in name:
        if not _must_escape(ch):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"%{ord(ch):02X}")
        else:
            out.append(f"%u{ord(ch):04X}")
    return "".join(out)


def restore_topic_part(part: str) -> str:
    """Inverse of :func:`sanitise_topic_part` (for subscribers that want the original camera name)."""
    if part == EMPTY_PART:
        return ""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), part)


def check_prefix(prefix: str) -> str:
    """Validate a topic prefix (one or more levels) and return it; ValueError says what is wrong."""
    problems = []
    if not prefix:
        problems.append("it is empty")
    if prefix.startswith("$"):
        problems.append("it starts with '$' (reserved for broker topics such as $SYS)")
    if any(ch in prefix for ch in "+#\0"):
        problems.append("it contains a wildcard '+' / '#' or NUL")
    if prefix and any(level == "" for level in prefix.split("/")):
        problems.append("it has an empty level (leading, trailing or double '/')")
    if problems:
        raise ValueError(
            f"MQTT topic prefix {prefix!r} is invalid: {'; '.join(problems)}; "
            "expected levels such as 'cplvad/device-01'"
        )
    return prefix


@dataclass(frozen=True)
class Topics:
    """All topics of one device under ``prefix``; camera names are sanitised here, once."""

    prefix: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{sanitise_topic_part(camera)}/status"

    def events(self, camera: str) -> str:
        return f"{self.prefix}/{sanitise_topic_part(camera)}/events"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{sanitise_topic_part(camera)}/state"

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{sanitise_topic_part(camera)}/snapshot"


TopicPrefix = Annotated[str, AfterValidator(check_prefix)]  # a config field holding a topic prefix
