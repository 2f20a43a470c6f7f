"""An image with every alert: a JPEG of the frame that triggered it, published retained and kept on disk.

:class:`Snapshotter` keeps, per camera, a reference to the last encoded frame of each snippet not yet scored
(no copy: the capture hands over a new array per frame) and the frame of the event's highest score so far. When
the pipeline emits a ``start`` it encodes the frame of the snippet that crossed the threshold (the message's
``frame_detected``); an ``update`` whose event reached a new peak since the last image gets the peak frame. The
JPEG (longest side <= ``max_side``, optionally with camera, category and score drawn on it) is

- published retained on ``<prefix>/<camera>/snapshot`` (the newest image of the camera),
- written to ``dir`` (default: ``snapshots/`` beside the outbox; files ``0600``) under retention limits
  (``keep_count`` files, ``keep_mb`` MB; oldest deleted first),
- referenced from the message: ``snapshot: {topic, file, sha256, frame, bytes}``.

Everything runs on the worker thread; a failure is logged and the message goes out without an image.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from edge.capture import Frame
from edge.configfile import StrictModel
from edge.snippets import FRAMES_PER_SNIPPET
from edge.topics import sanitise_topic_part

log = logging.getLogger(__name__)

_PENDING_SNIPPETS = 64  # frames kept for snippets not yet scored, at most (a batch spans far fewer)


class SnapshotConfig(StrictModel):
    """Alert images (the ``snapshots`` section of the edge config)."""

    enabled: bool = Field(False, description="a JPEG of the triggering frame with every start (and new peak); off by "
                          "default: it adds binary payloads under <prefix>/#")
    dir: Path | None = Field(None, description="folder of the saved JPEGs; None: 'snapshots' beside the outbox")
    max_side: int = Field(640, ge=32, le=8192, description="longest image side in pixels (larger frames shrink)")
    quality: int = Field(80, ge=1, le=100, description="JPEG quality")
    draw_score: bool = Field(True, description="draw camera, category and score on the image")
    keep_count: int = Field(500, ge=1, description="files kept in dir, at most (oldest deleted first)")
    keep_mb: float = Field(200.0, gt=0, description="megabytes kept in dir, at most (oldest deleted first)")


def encode_jpeg(image: np.ndarray, max_side: int, quality: int, label: str | None = None) -> bytes:
    """JPEG bytes of a BGR ``image`` [H, W, 3] shrunk to a longest side <= ``max_side``, ``label`` drawn at the
    top left on a dark band when given."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    elif label:
        image = image.copy()  # never draw on the capture's array
    if label:
        font_scale = max(0.35, image.shape[1] / 1000)
        thickness = max(1, round(font_scale * 2))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        cv2.rectangle(image, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), cv2.FILLED)
        cv2.putText(image, label, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def enforce_retention(folder: Path, keep_count: int, keep_bytes: int) -> list[Path]:
    """Delete the oldest ``*.jpg`` in ``folder`` until at most ``keep_count`` files and ``keep_bytes`` bytes
    remain; returns the deleted paths."""
    files = []
    for path in folder.glob("*.jpg"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        files.append((st.st_mtime_ns, path.name, path, st.st_size))
    files.sort()
    total = sum(f[3] for f in files)
    deleted = []
    while files and (len(files) > keep_count or total > keep_bytes):
        _, _, path, size = files.pop(0)
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


@dataclass
class _CameraFrames:
    segment: int | None = None
    pending: dict[int, Frame] = field(default_factory=dict)  # snippet index -> its last encoded frame
    peak: float = -1.0  # highest score of the open event
    peak_frame: Frame | None = None
    sent_peak: float = -1.0  # score of the last image sent for the open event


class Snapshotter:
    """Alert images of all cameras; see the module docstring.

    topic_of: camera -> its snapshot topic; publish_retained: (topic, bytes) -> None (None: disk only).
    """

    def __init__(self, config: SnapshotConfig, topic_of: Callable[[str], str],
                 publish_retained: Callable[[str, bytes], None] | None = None) -> None:
        if config.dir is None:
            raise ValueError("snapshots.dir is not set; resolve it first (EdgeConfig.snapshot_dir)")
        self.config = config
        self.dir = config.dir
        self.topic_of = topic_of
        self.publish_retained = publish_retained
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cameras: dict[str, _CameraFrames] = {}
        self.saved = 0

    def _camera(self, camera: str) -> _CameraFrames:
        return self._cameras.setdefault(camera, _CameraFrames())

    def note_frame(self, frame: Frame) -> None:
        """Remember ``frame`` as the latest of its snippet (a reference; the previous one of the snippet goes)."""
        cam = self._camera(frame.camera)
        if cam.segment is not None and frame.segment < cam.segment:
            return  # a late frame of a stream that ended
        if frame.segment != cam.segment:
            cam.segment, cam.pending = frame.segment, {}
            cam.peak, cam.peak_frame, cam.sent_peak = -1.0, None, -1.0
        cam.pending[frame.index // FRAMES_PER_SNIPPET] = frame
        if len(cam.pending) > _PENDING_SNIPPETS:
            del cam.pending[min(cam.pending)]

    def note_scored(self, camera: str, index: int, score: float, active: bool) -> None:
        """Snippet ``index`` was scored (after its messages were emitted): keep its frame if it is the open
        event's new peak, and forget the frames of scored snippets."""
        cam = self._camera(camera)
        frame = cam.pending.get(index)
        if active and score > cam.peak:
            cam.peak = score
            cam.peak_frame = frame or cam.peak_frame
        elif not active:
            cam.peak, cam.peak_frame, cam.sent_peak = -1.0, None, -1.0
        for key in [k for k in cam.pending if k <= index]:
            del cam.pending[key]

    def attach(self, camera: str, message: dict[str, Any]) -> None:
        """Add ``snapshot`` to a ``start`` (its triggering frame) or to an ``update`` after a new peak."""
        cam = self._camera(camera)
        if message["type"] == "start":
            frame = cam.pending.get(int(message["frame_detected"]) // FRAMES_PER_SNIPPET)
            score = float(message["score"])
            cam.peak, cam.peak_frame = score, frame
        elif message["type"] == "update" and cam.peak > cam.sent_peak and cam.peak_frame is not None:
            frame, score = cam.peak_frame, cam.peak
        else:
            return
        if frame is None:
            log.warning("camera %s: no frame kept for the %s at frame %s; no snapshot", camera, message["type"],
                        message["frame_detected"])
            return
        try:
            message["snapshot"] = self._save(camera, message, frame, score)
            cam.sent_peak = max(score, cam.sent_peak)
        except (OSError, ValueError, cv2.error) as err:
            log.error("camera %s: snapshot failed (%s); the event goes out without one", camera, err)

    def _save(self, camera: str, message: dict[str, Any], frame: Frame, score: float) -> dict[str, Any]:
        cfg = self.config
        label = f"{camera}  {message['category']}  {score:.2f}" if cfg.draw_score else None
        data = encode_jpeg(frame.image, cfg.max_side, cfg.quality, label)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{sanitise_topic_part(camera)}-{message['event_id'][:8]}-{frame.index:08d}.jpg"
        if name.startswith("."):
            name = "_" + name
        path = self.dir / name
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        self.saved += 1
        enforce_retention(self.dir, cfg.keep_count, int(cfg.keep_mb * 1e6))
        topic = self.topic_of(camera)
        if self.publish_retained is not None:
            self.publish_retained(topic, data)
        return {"topic": topic, "file": name, "sha256": digest, "frame": frame.index, "bytes": len(data)}
