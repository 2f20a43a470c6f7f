"""Camera capture for the device: one supervised reader per camera that never blocks the pipeline.

Sources (:func:`parse_source`): a V4L2 index (``0``) or device (``/dev/video0``), an RTSP/HTTP URL, a video
file (opened with FFmpeg, so its name is taken literally, ``%`` included), an image sequence (a name with a
printf integer that is not an existing file: ``frames/%05d.png``), a Jetson CSI camera
(``csi://0?width=1280&height=720&fps=30``, a GStreamer pipeline) or a raw GStreamer pipeline
(``gst:<pipeline ending in appsink>``). ``name=<source>`` names the camera; otherwise a name is derived
(credentials never end up in names or logs).

Threads. Each :class:`CameraCapture` runs a supervisor thread and, under it, one reader thread per connection.
The reader opens the source (OpenCV's open/read timeouts where the backend has them: FFmpeg, GStreamer) and
reads frames. The supervisor is the watchdog: a reader that makes no progress for ``watchdog_s`` (a call stuck
in a backend without timeouts, e.g. V4L2 or a wedged pipeline) is abandoned (its late frames are discarded and
it releases its capture when the call returns) and a new connection is made. Failures reconnect with
exponential backoff (capped, with jitter); a connection that delivered frames resets the backoff.

Delivery policy. The encoder must see exactly the frames that ``encode_every`` selects, or a snippet's
mean would not be the one the model was trained on. So the capture takes a predicate ``wants(index)`` and
queues only the frames it selects (the others are grabbed but not converted to BGR: ``skipped``, cheap) in
a small bounded queue that drops the OLDEST frame when full (``dropped``): a slow consumer loses old frames,
never latency, and the frame indices tell the snippet code which frames it missed. ``wants=None,
queue_size=1`` is the classic newest-frame-only slot. A file read with ``realtime=False`` is the exception:
it is read as fast as the consumer takes frames (the reader waits while the queue is full), so offline runs
lose nothing.

Frame indices. ``Frame.index`` counts every frame the source produced since the current ``segment`` began
(0 at each (re)connection and at each loop restart), whether it was delivered, skipped, dropped or corrupt;
for a file it is the frame number in the file, which aligns with ground truth. A new ``segment`` is a
discontinuity: the snippet code restarts its partial snippet. When a file ends (or loops),
:meth:`CameraCapture.segment_length` gives the segment's frame count, so the snippet code can finish the last
snippet on frames that were read but not delivered.

States (:class:`CameraState`): ``connecting`` -> ``online`` (first good frame) -> ``offline`` (with a reason:
open failure, read failure or timeout, stall, stop) -> ``connecting`` ...; a file that ends without ``loop``
goes to ``ended``. ``on_status`` is called from the capture threads on every change (exceptions are logged).

RTSP through FFmpeg uses UDP unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp`` is set in the
environment before the first capture opens.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from pydantic import Field

from edge import gstreamer
from edge.configfile import StrictModel

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_IMAGE_PATTERN = re.compile(r"%0?\d*d")  # the printf integer of an image sequence name
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_CSI_KEYS = {"width": int, "height": int, "fps": float, "flip": int}


class SourceKind(str, Enum):
    V4L2 = "v4l2"
    URL = "url"
    FILE = "file"
    IMAGES = "images"
    GSTREAMER = "gstreamer"


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    """A parsed camera source: what ``cv2.VideoCapture(target, api)`` opens."""

    name: str
    kind: SourceKind
    target: str | int
    api: int
    display: str  # the source as logs show it (passwords replaced by ***)

    @property
    def is_file(self) -> bool:
        """Finite sources: they end, can loop and can be paced at their own fps."""
        return self.kind in (SourceKind.FILE, SourceKind.IMAGES)


def _url_end(text: str, start: int) -> int:
    """Where the URL whose scheme begins at ``start`` ends: a URL that is the whole text keeps its spaces; one
    in quotes (a GStreamer ``location="..."``) ends at the closing quote; any other ends at white space."""
    if start == 0:
        return len(text)
    quote = text[start - 1]
    if quote in "\"'":
        end = text.find(quote, start)
        return len(text) if end < 0 else end
    space = re.search(r"\s", text[start:])
    return len(text) if space is None else start + space.start()


def split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``scheme://user:pass@host/x`` -> (``scheme://``, ``user:pass``, ``host/x``); userinfo None without '@'.

    The userinfo ends at the LAST '@': a password may hold '@', '/', ':', '?' or spaces (unencoded), which a
    standard parser would read as the host or the path.
    """
    match = _URL.match(url)
    if match is None:
        return "", None, url
    rest = url[match.end():]
    userinfo, at, host = rest.rpartition("@")
    return (url[:match.end()], userinfo, host) if at else (url[:match.end()], None, rest)


def redact(text: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://user:***@host/x``, for every URL in ``text`` (the whole text,
    or URLs inside GStreamer pipelines). Passwords with '@', '/', ':' or spaces, percent-encoded ones and an
    empty user (``rtsp://:pw@host``) are masked too; a user without a password is kept."""
    out, pos = [], 0
    for match in _SCHEME.finditer(text):
        if match.start() < pos:  # inside a URL already handled (a password that looks like a scheme)
            continue
        end = _url_end(text, match.start())
        scheme, userinfo, host = split_userinfo(text[match.start():end])
        if userinfo is None:
            continue
        user, colon, _password = userinfo.partition(":")
        if colon:
            out.append(text[pos:match.start()] + scheme + user + ":***@")
            pos = end - len(host)
    out.append(text[pos:])
    return "".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "camera"


def _csi_spec(source: str) -> str:
    """``csi://N?width=..&height=..&fps=..&flip=..`` -> nvarguscamerasrc pipeline."""
    parts = urlsplit(source)
    sensor = parts.netloc or parts.path.strip("/")
    if not sensor.isdigit():
        raise ValueError(f"camera {source!r}: expected csi://<sensor id>, e.g. csi://0")
    kwargs: dict[str, Any] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in _CSI_KEYS:
            raise ValueError(f"camera {source!r}: unknown option {key!r}; expected {', '.join(_CSI_KEYS)}")
        try:
            kwargs[key] = _CSI_KEYS[key](values[-1])
        except ValueError:
            raise ValueError(f"camera {source!r}: {key}={values[-1]!r} is not a number") from None
    if "flip" in kwargs:
        kwargs["flip_method"] = kwargs.pop("flip")
    return gstreamer.csi_pipeline(int(sensor), **kwargs)


def _looks_like_source(text: str) -> bool:
    """Whether ``text`` is a camera source on its own (so ``x=text`` meant a name for it)."""
    return (text.isdigit() or bool(re.fullmatch(r"/dev/video\d+", text)) or bool(_URL.match(text))
            or text.startswith("gst:") or Path(text).exists())


def parse_source(spec: str) -> CameraSpec:
    """Parse a ``--camera`` value: ``[name=]source`` (see the module docstring for the sources)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"camera source must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    name = None
    head, sep, rest = spec.partition("=")
    if sep and not head.strip() and not Path(spec).exists():
        raise ValueError(f"camera {redact(spec)!r}: empty camera name before '='; give NAME=SOURCE "
                         "(letters, digits, '_', '.', '-') or the source alone")
    if sep and _NAME.fullmatch(head) and rest and not Path(spec).exists():
        name, spec = head, rest
    elif (sep and head and rest and not Path(spec).exists() and not _URL.match(head)
          and not head.startswith("gst:") and _looks_like_source(rest)):
        raise ValueError(f"camera name {head!r} in {redact(spec)!r}: names may use letters, digits, '_', '.' and "
                         "'-' only (they become MQTT topic levels)")
    source = spec

    if source.isdigit() or re.fullmatch(r"/dev/video\d+", source):
        index = int(source) if source.isdigit() else source
        derived = f"video{source}" if source.isdigit() else Path(source).name
        return CameraSpec(name or derived, SourceKind.V4L2, index, cv2.CAP_V4L2, source)
    if source.lower().startswith("csi://"):
        return CameraSpec(name or "csi" + (urlsplit(source).netloc or "0"), SourceKind.GSTREAMER,
                          _csi_spec(source), cv2.CAP_GSTREAMER, source)
    if source.startswith("gst:"):
        pipeline = source[4:].strip()
        if "appsink" not in pipeline:
            raise ValueError(f"camera {redact(source)!r}: a gst: pipeline must end in an appsink "
                             "(e.g. '... ! videoconvert ! video/x-raw, format=BGR ! appsink drop=1')")
        digest = hashlib.sha1(pipeline.encode()).hexdigest()[:8]
        return CameraSpec(name or f"gst-{digest}", SourceKind.GSTREAMER, pipeline, cv2.CAP_GSTREAMER,
                          redact(pipeline))
    if source.lower().startswith("file://"):
        source = urlsplit(source).path
    elif _URL.match(source):
        scheme, _, host = split_userinfo(source)
        parts = urlsplit(scheme + host)  # without the credentials: a password may hold '/', '@' or '#'
        if parts.scheme.lower() not in _LIVE_SCHEMES:
            raise ValueError(f"camera {redact(source)!r}: unsupported scheme {parts.scheme!r}; "
                             f"expected one of {', '.join(_LIVE_SCHEMES)}, csi, gst: or file://")
        tail = Path(parts.path).stem
        derived = _slug(f"{parts.hostname or 'stream'}-{tail}" if tail else parts.hostname or "stream")
        return CameraSpec(name or derived, SourceKind.URL, source, cv2.CAP_FFMPEG, redact(source))
    if _IMAGE_PATTERN.search(Path(source).name) and not Path(source).is_file():  # e.g. frames/%05d.png
        return CameraSpec(name or _slug(Path(source).parent.name or "images"), SourceKind.IMAGES, source,
                          cv2.CAP_IMAGES, source)
    return CameraSpec(name or _slug(Path(source).stem), SourceKind.FILE, source, cv2.CAP_FFMPEG, source)


def file_problem(spec: CameraSpec) -> str | None:
    """Why a video file camera cannot be opened, from the file system alone: 'no such file', 'not a file' or
    'not readable (permission denied)'; None for other sources and for files that are there to read."""
    if spec.kind is not SourceKind.FILE:
        return None
    path = Path(str(spec.target))
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def check_file_source(spec: CameraSpec) -> str | None:
    """Why a file or image-sequence camera cannot be read ('no such file', 'not a readable video: ...'), or
    None when it opens and yields a first frame. Other sources: None (they are checked when they connect)."""
    if not spec.is_file:
        return None
    problem = file_problem(spec)
    if problem is not None:
        return problem
    cap = cv2.VideoCapture(spec.target, spec.api)
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        cap.release()
    if ok:
        return None
    return ("not a readable video: OpenCV (FFmpeg) cannot decode a frame from it" if spec.kind is SourceKind.FILE
            else "no image of the sequence could be read")

class CameraState(str, Enum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    ENDED = "ended"


@dataclasses.dataclass(frozen=True)
class CameraStatus:
    camera: str
    state: CameraState
    reason: str
    time: float  # wall clock, seconds since the epoch


@dataclasses.dataclass(frozen=True)
class Frame:
    camera: str
    index: int  # frame number in the segment (every frame the source produced counts)
    segment: int  # 0 for the first connection; +1 at each reconnection or loop restart
    timestamp: float  # wall clock when the frame was read
    image: np.ndarray  # [H, W, 3] uint8 BGR
    position_s: float | None = None  # files: position in the file (s); None for live sources


class CaptureOptions(StrictModel):
    """How cameras are read (the ``capture`` section of the edge config). Times in seconds."""

    open_timeout_s: float = Field(10.0, gt=0, description="FFmpeg/GStreamer open timeout")
    read_timeout_s: float = Field(5.0, gt=0, description="FFmpeg/GStreamer timeout of one read")
    watchdog_s: float | None = Field(None, gt=0, description="a reader with no progress for this long is "
                                     "abandoned and the camera reconnects; None: max(open, read timeout) + 5")
    backoff_base_s: float = Field(1.0, gt=0, description="first retry delay; doubles per failed attempt")
    backoff_cap_s: float = Field(30.0, gt=0, description="longest retry delay")
    backoff_jitter: float = Field(0.2, ge=0, lt=1, description="each delay is shortened by up to this "
                                  "fraction at random, so cameras that failed together do not retry together")
    realtime: bool = Field(True, description="files: pace at the file's fps (false: as fast as the consumer "
                           "takes frames, losing none)")
    loop: bool = Field(False, description="files: start again at the end instead of ending")
    queue_size: int = Field(1, ge=1, description="wanted frames kept for the consumer; the oldest is dropped "
                            "when full (1: newest frame only)")
    fallback_fps: float = Field(25.0, gt=0, le=1000, description="pacing of files that do not say their fps")
    max_corrupt: int = Field(25, ge=1, description="consecutive undecodable frames before reconnecting")

    @property
    def watchdog_limit_s(self) -> float:
        if self.watchdog_s is not None:
            return self.watchdog_s
        return max(self.open_timeout_s, self.read_timeout_s) + 5


@dataclasses.dataclass(frozen=True)
class CaptureStats:
    camera: str
    state: CameraState
    reason: str
    frames_read: int  # frames the source produced (grabbed), over all segments
    delivered: int  # frames the consumer took
    dropped: int  # wanted frames pushed out of the queue before the consumer took them
    skipped: int  # frames ``wants`` did not select
    corrupt: int  # frames that could not be decoded into an image
    reconnects: int  # connection attempts after the first (loop restarts do not count)
    resolution_changes: int
    fps: float  # measured source frame rate over the last frames (0 until two frames)
    last_frame_age_s: float | None  # seconds since the last frame, None before the first


def backoff_delay(attempt: int, base: float, cap: float, jitter: float = 0.0, u: float = 0.0) -> float:
    """Retry delay after ``attempt`` failures (0-based): ``min(cap, base * 2**attempt) * (1 - jitter * u)``.

    ``u`` in [0, 1) is the random draw; the delay never exceeds ``cap``.
    """
    return min(cap, base * 2.0 ** min(attempt, 64)) * (1.0 - jitter * u)


def file_position(pos_msec: float, index: int, fps: float) -> float:
    """Position (s) in a file of frame ``index``: the decoder's timestamp (CAP_PROP_POS_MSEC) where it gives
    one, else ``index / fps`` (image sequences and backends that report 0 or nonsense)."""
    if math.isfinite(pos_msec) and pos_msec >= 0 and (pos_msec > 0 or index == 0):
        return pos_msec / 1000.0
    return index / fps


def measured_fps(times: collections.deque[float] | list[float]) -> float:
    """Frames per second from increasing frame times: (n - 1) / (last - first); 0 with fewer than 2."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def _valid_image(image: object) -> bool:
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0)


class _Session:
    """One connection: the reader's progress as the watchdog sees it, and how it ended."""

    def __init__(self, segment: int) -> None:
        self.segment = segment
        self.abandoned = threading.Event()
        self.heartbeat = time.monotonic()
        self.frames = 0  # good frames delivered or skipped in this session
        self.outcome: str | None = None  # "ended", "loop" or "failed"
        self.reason = ""

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def finish(self, outcome: str, reason: str = "") -> None:
        self.outcome, self.reason = outcome, reason


class CameraCapture:
    """Reads one camera in background threads; the consumer takes frames with :meth:`get` or :meth:`drain`.

    ``wants(index)`` selects the frames to queue (None: all); ``wake`` is set whenever a frame is queued, so
    one worker can wait on many cameras; ``on_status`` sees every state change.
    """

    def __init__(self, source: CameraSpec | str, options: CaptureOptions | None = None, *,
                 wants: Callable[[int], bool] | None = None,
                 on_status: Callable[[CameraStatus], None] | None = None,
                 wake: threading.Event | None = None, seed: int | None = None) -> None:
        self.spec = parse_source(source) if isinstance(source, str) else source
        self.options = options or CaptureOptions()
        self._wants = wants
        self._on_status = on_status
        self._wake = wake
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._cond = threading.Condition()  # guards the queue, counters and state
        self._queue: collections.deque[Frame] = collections.deque()
        self._state, self._reason = CameraState.CONNECTING, "not started"
        self._finished = False  # the supervisor has exited: no more frames will come
        self._counts = collections.Counter[str]()
        self._times: collections.deque[float] = collections.deque(maxlen=32)
        self._last_frame_time: float | None = None
        self._shape: tuple[int, ...] | None = None
        self._segment = -1
        self._source_fps = 0.0  # files: their frame rate (fallback_fps when they do not say); live: 0
        self._file_ends: collections.deque[tuple[int, int]] = collections.deque(maxlen=8)  # (segment, frames)
        self._supervisor: threading.Thread | None = None
        self._reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def status(self) -> CameraStatus:
        with self._cond:
            return CameraStatus(self.name, self._state, self._reason, time.time())

    @property
    def finished(self) -> bool:
        """No frame will come any more (ended or stopped) and the queue is empty."""
        with self._cond:
            return self._finished and not self._queue

    def stats(self) -> CaptureStats:
        with self._cond:
            age = None if self._last_frame_time is None else time.monotonic() - self._last_frame_time
            c = self._counts
            return CaptureStats(self.name, self._state, self._reason, c["read"], c["delivered"], c["dropped"],
                                c["skipped"], c["corrupt"], c["reconnects"], c["resolution_changes"],
                                measured_fps(self._times), age)

    @property
    def source_fps(self) -> float:
        """A file's own frame rate (the one its positions follow); 0 for live sources or before opening."""
        with self._cond:
            return self._source_fps

    def segment_length(self, segment: int) -> int | None:
        """Frames of ``segment`` when it ran to the end of the file (None: it did not, or not yet, or not
        recently): the frames after the last delivered one were read, and skipped."""
        with self._cond:
            return next((frames for s, frames in self._file_ends if s == segment), None)

    # -- consumer side -------------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame, waiting up to ``timeout`` s; None on timeout or when finished."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._finished or self._stop.is_set(), timeout)
            if not self._queue:
                return None
            self._counts["delivered"] += 1
            frame = self._queue.popleft()
            self._cond.notify_all()  # a reader waiting for room (realtime=False files)
            return frame

    def drain(self) -> list[Frame]:
        """Every queued frame, oldest first, without waiting."""
        with self._cond:
            frames = list(self._queue)
            self._queue.clear()
            self._counts["delivered"] += len(frames)
            self._cond.notify_all()
            return frames

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> CameraCapture:
        if self._supervisor is not None:
            raise RuntimeError(f"camera {self.name}: already started")
        self._supervisor = threading.Thread(target=self._supervise, name=f"capture[{self.name}]", daemon=True)
        self._supervisor.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop reading and join the threads; False (and a warning) if a reader is still blocked in OpenCV."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (self._supervisor, self._reader):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (self._supervisor, self._reader) if t is not None and t.is_alive()]
        if alive:
            log.warning("camera %s: %s still blocked in a capture call after %.1f s; left to exit on its own "
                        "(daemon thread)", self.name, ", ".join(alive), timeout)
        return not alive

    def __enter__(self) -> CameraCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- supervisor (watchdog + reconnect) -------------------------------------------------------------------

    def _set_state(self, state: CameraState, reason: str = "") -> None:
        with self._cond:
            if (state, reason) == (self._state, self._reason):
                return
            self._state, self._reason = state, reason
        level = logging.WARNING if state is CameraState.OFFLINE and reason != "stopped" else logging.INFO
        log.log(level, "camera %s: %s%s", self.name, state.value, f" ({reason})" if reason else "")
        if self._on_status is not None:
            try:
                self._on_status(CameraStatus(self.name, state, reason, time.time()))
            except Exception:
                log.exception("camera %s: status callback failed", self.name)

    def _supervise(self) -> None:
        opts = self.options
        attempt = 0
        restart = False  # a loop restart reconnects at once and keeps the state
        try:
            while not self._stop.is_set():
                if not restart:
                    self._set_state(CameraState.CONNECTING, self.spec.display)
                with self._cond:
                    self._segment += 1
                session = _Session(self._segment)
                self._reader = threading.Thread(target=self._read, args=(session,),
                                                name=f"capture[{self.name}]/read", daemon=True)
                self._reader.start()
                limit = opts.watchdog_limit_s
                while self._reader.is_alive() and not self._stop.is_set():
                    self._reader.join(min(0.1, limit / 4))
                    idle = time.monotonic() - session.heartbeat
                    if self._reader.is_alive() and idle > limit:
                        session.abandoned.set()
                        session.finish("failed", f"no progress for {idle:.1f} s (watchdog)")
                        break
                if self._stop.is_set():
                    break
                if session.outcome == "ended":
                    self._set_state(CameraState.ENDED, f"end of file after {session.frames} frames")
                    return
                restart = session.outcome == "loop"
                if restart:
                    continue
                if session.frames > 0:
                    attempt = 0
                delay = backoff_delay(attempt, opts.backoff_base_s, opts.backoff_cap_s, opts.backoff_jitter,
                                      self._rng.random())
                attempt += 1
                self._set_state(CameraState.OFFLINE,
                                f"{session.reason or 'reader stopped'}; retry {attempt} in {delay:.2f} s")
                if self._stop.wait(delay):
                    break
                with self._cond:
                    self._counts["reconnects"] += 1
            self._set_state(CameraState.OFFLINE, "stopped")
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()
            if self._wake is not None:
                self._wake.set()

    # -- reader ----------------------------------------------------------------------------------------------

    def _open(self) -> cv2.VideoCapture:
        params: list[int] = []
        if self.spec.api in (cv2.CAP_FFMPEG, cv2.CAP_GSTREAMER):  # the backends that honour the timeouts
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout_s * 1000)]
        if self.spec.kind is SourceKind.GSTREAMER:
            gstreamer.require_gstreamer()
        return cv2.VideoCapture(self.spec.target, self.spec.api, params)

    def _read(self, session: _Session) -> None:
        cap = None
        try:
            session.beat()
            cap = self._open()
            if not cap.isOpened():
                problem = file_problem(self.spec) or ("not a readable video" if self.spec.is_file else "")
                session.finish("failed", f"cannot open {self.spec.display}" + (f": {problem}" if problem else ""))
                return
            self._read_frames(cap, session)
        except Exception as exc:  # a backend error must not kill the camera: reconnect instead
            log.exception("camera %s: reader failed", self.name)
            session.finish("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if cap is not None:
                cap.release()

    def _read_frames(self, cap: cv2.VideoCapture, session: _Session) -> None:
        opts, spec = self.options, self.spec
        # an image sequence has no frame rate (OpenCV's image reader says 1.0): it is paced at fallback_fps
        fps = cap.get(cv2.CAP_PROP_FPS) if spec.kind is SourceKind.FILE else 0.0
        if spec.is_file and not (math.isfinite(fps) and 0 < fps <= 1000):
            fps = opts.fallback_fps
        pace = spec.is_file and opts.realtime
        lossless = spec.is_file and not opts.realtime
        if spec.is_file:
            with self._cond:
                self._source_fps = fps
        start = time.monotonic()
        index = corrupt_run = 0
        while not self._stop.is_set() and not session.abandoned.is_set():
            session.beat()
            if pace and self._stop.wait(max(0.0, start + index / fps - time.monotonic())):
                return
            wanted = self._wants is None or self._wants(index)
            if lossless and wanted and not self._wait_for_room(session):
                return
            session.beat()
            if wanted:
                ok, image = cap.read()
            else:
                ok, image = cap.grab(), None
            session.beat()
            if session.abandoned.is_set():
                return
            if not ok:
                if not spec.is_file:
                    session.finish("failed", f"read failed or timed out after {index} frames")
                elif index == 0:
                    session.finish("failed", f"no frame could be decoded from {spec.display}")
                else:
                    with self._cond:
                        self._file_ends.append((session.segment, index))
                    session.finish("loop" if opts.loop else "ended")
                return
            if not wanted:
                self._count_frame(session, "skipped")
            elif _valid_image(image):
                corrupt_run = 0
                position = file_position(cap.get(cv2.CAP_PROP_POS_MSEC), index, fps) if spec.is_file else None
                self._deliver(session, Frame(self.name, index, session.segment, time.time(), image, position))
            else:
                corrupt_run += 1
                self._count_frame(session, "corrupt")
                if corrupt_run >= opts.max_corrupt:
                    session.finish("failed", f"{corrupt_run} consecutive unreadable frames")
                    return
            index += 1

    def _wait_for_room(self, session: _Session) -> bool:
        """Lossless file reading: wait until the queue has room; False when stopping."""
        with self._cond:
            while len(self._queue) >= self.options.queue_size:
                if self._stop.is_set() or session.abandoned.is_set():
                    return False
                session.beat()
                self._cond.wait(0.1)
        return True

    def _count_frame(self, session: _Session, kind: str | None) -> None:
        """Count one frame the source produced (``kind``: "skipped", "corrupt" or None for a good one)."""
        now = time.monotonic()
        with self._cond:
            self._counts["read"] += 1
            if kind is not None:
                self._counts[kind] += 1
            self._times.append(now)
            self._last_frame_time = now
        if kind != "corrupt":
            session.frames += 1
            if session.frames == 1:
                self._set_state(CameraState.ONLINE, self.spec.display)

    def _deliver(self, session: _Session, frame: Frame) -> None:
        """Queue a wanted frame, dropping the oldest queued one when the queue is full."""
        self._count_frame(session, None)
        shape = frame.image.shape
        with self._cond:
            if self._shape is not None and shape != self._shape:
                self._counts["resolution_changes"] += 1
                log.info("camera %s: resolution changed from %dx%d to %dx%d at frame %d (segment %d)",
                         self.name, self._shape[1], self._shape[0], shape[1], shape[0], frame.index,
                         frame.segment)
            self._shape = shape
            if len(self._queue) >= self.options.queue_size:
                self._queue.popleft()
                self._counts["dropped"] += 1
            self._queue.append(frame)
            self._cond.notify_all()
        if self._wake is not None:
            self._wake.set()
