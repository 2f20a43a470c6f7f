"""Durable outbox: messages are written to SQLite before they are published and deleted on PUBACK.

Nothing is lost while the broker is down or when the process is killed: a message is committed (WAL,
``synchronous=FULL`` by default, so it also survives a power cut) before the publisher hands it to the
network, and it is deleted only once the broker acknowledged it. After a reconnect or a restart the
publisher replays :meth:`Outbox.pending` in insertion order. The outbox is bounded (rows and payload bytes);
when full, the oldest messages are dropped, counted and logged.

The outbox also keeps named counters and, per camera, the event that is open (its latest ``start`` /
``update``). :meth:`Outbox.put_event` stores an event message, commits its ``seq`` as the camera's counter and
updates the camera's open event in ONE transaction, so after a crash the three always agree: a ``seq`` is
committed exactly when its message is, and the next start finds the events left open
(:meth:`Outbox.open_events`) and closes them (``end``, reason ``restart``). :meth:`Outbox.next_seq` hands out
numbers from memory, after the last committed one; a number handed out but never stored (killed in between)
is handed out again, it never reached a subscriber. Subscribers deduplicate on (event_id, seq).
One process owns the file (a second one is refused). One connection guarded by a lock: the runtime thread
puts, the MQTT sender thread acks.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from edge.configfile import StrictModel

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: open_events (the open event per camera, for crash recovery)
_DROPPED = "dropped"  # counter name of messages dropped because the outbox was full


class OutboxConfig(StrictModel):
    """Where and how much the device buffers while the broker cannot be reached."""

    path: Path = Field(Path("var/outbox.sqlite3"), description="SQLite file (created 0600, its folder 0700)")
    max_rows: int = Field(100_000, ge=1, description="at most this many buffered messages; oldest dropped")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="at most this many payload bytes buffered")
    fsync: bool = Field(
        True, description="fsync every commit (survives power loss); off: survives process kill"
    )


class OutboxError(RuntimeError):
    """An outbox that cannot be used (unwritable path, not SQLite, held by another process); phrased for users."""


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _create_private_file(path: Path) -> None:
    """Create ``path`` readable by the owner only (and its missing folders 0700); tighten an existing file."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class Outbox:
    """A bounded, durable FIFO of MQTT messages plus persistent counters."""

    def __init__(
        self, path: str | Path, max_rows: int = 100_000, max_bytes: int = 64 * 1024 * 1024, fsync: bool = True
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError(
                f"outbox bounds must be positive, got max_rows={max_rows}, max_bytes={max_bytes}"
            )
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}  # camera -> last seq handed out by next_seq
        try:
            _create_private_file(self.path)
        except OSError as err:
            raise OutboxError(
                f"outbox {self.path}: cannot create it ({err.strerror}); set outbox.path to a writable file "
                "(e.g. --set outbox.path=/var/lib/cplvad/outbox.sqlite3)"
            ) from None
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=0.5)
        except sqlite3.Error as err:
            raise OutboxError(f"outbox {self.path}: cannot open it ({err}); check the file and its folder") from None
        try:
            # One process owns an outbox: a second publisher on the same file would replay it twice.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._migrate()
            self._rows, self._bytes = self._totals()
        except (sqlite3.DatabaseError, OutboxError) as err:
            self._db.close()
            if isinstance(err, OutboxError):
                raise
            if "locked" in str(err):
                raise OutboxError(
                    f"outbox {self.path} is in use by another process (one runtime per outbox file; "
                    "stop the other one or give this one its own outbox.path)"
                ) from None
            if isinstance(err, sqlite3.OperationalError):
                raise OutboxError(f"outbox {self.path}: cannot use it ({err}); check the file and its folder") from None
            raise OutboxError(
                f"outbox {self.path}: cannot open as SQLite ({err}); "
                "move the file away to start with an empty outbox"
            ) from None
        if self._rows:
            log.info("outbox %s holds %d messages (%d bytes) to replay", self.path, self._rows, self._bytes)

    @classmethod
    def from_config(cls, config: OutboxConfig) -> Outbox:
        return cls(config.path, config.max_rows, config.max_bytes, config.fsync)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version not in (0, 1):
            raise OutboxError(
                f"outbox {self.path} has schema version {version}, this code reads {SCHEMA_VERSION}; "
                "run the matching version or move the file away"
            )
        tables = (
            ""
            if version == 1
            else "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);"
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        )
        self._db.executescript(
            "BEGIN IMMEDIATE;"
            f"{tables}"
            "CREATE TABLE open_events (camera TEXT PRIMARY KEY, payload BLOB NOT NULL);"
            f"PRAGMA user_version={SCHEMA_VERSION};"
            "COMMIT;"
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Run the block in one transaction: commit, or roll back and re-read the row/byte totals."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._rows, self._bytes = self._totals()
            raise
        self._db.execute("COMMIT")

    def _totals(self) -> tuple[int, int]:
        rows, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
        ).fetchone()
        return int(rows), int(size)

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Store a message durably and return its id (ids increase in insertion order)."""
        self._check_size(topic, payload)
        with self._lock, self._transaction():
            return self._insert(topic, payload, qos, retain)

    def _check_size(self, topic: str, payload: bytes) -> None:
        if len(payload) > self.max_bytes:
            raise ValueError(
                f"outbox message for {topic!r} has {len(payload)} bytes, "
                f"more than the outbox limit max_bytes={self.max_bytes}"
            )

    def _insert(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Insert one message inside the caller's transaction, then enforce the limits; its id."""
        cursor = self._db.execute("INSERT INTO messages (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                                  (topic, payload, qos, int(retain)))
        self._rows += 1
        self._bytes += len(payload)
        self._drop_oldest_over_limits()
        return int(cursor.lastrowid)

    def put_event(
        self, camera: str, topic: str, payload: bytes, *, seq: int, open_event: dict[str, Any] | None
    ) -> int:
        """Store event message number ``seq`` of ``camera`` and return its id; in the same transaction the
        camera's seq counter becomes ``seq`` (it never goes back) and its open event becomes ``open_event``
        (the message of an event that stays open: a ``start`` or ``update``; None once it ended)."""
        self._check_size(topic, payload)
        with self._lock, self._transaction():
            message_id = self._insert(topic, payload, 1, False)
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                (f"seq/{camera}", seq),
            )
            if open_event is None:
                self._db.execute("DELETE FROM open_events WHERE camera = ?", (camera,))
            else:
                self._db.execute(
                    "INSERT INTO open_events (camera, payload) VALUES (?, ?) "
                    "ON CONFLICT(camera) DO UPDATE SET payload = excluded.payload",
                    (camera, json.dumps(open_event, allow_nan=False).encode()),
                )
            return message_id

    def open_events(self) -> dict[str, dict[str, Any]]:
        """Camera -> the latest stored message of its open event (events a killed process left open)."""
        with self._lock:
            rows = self._db.execute("SELECT camera, payload FROM open_events ORDER BY camera").fetchall()
        return {camera: json.loads(payload) for camera, payload in rows}

    def _drop_oldest_over_limits(self) -> None:
        dropped = 0
        while self._rows > self.max_rows or self._bytes > self.max_bytes:
            row_id, size = self._db.execute(
                "SELECT id, LENGTH(payload) FROM messages ORDER BY id LIMIT 1"
            ).fetchone()
            self._db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
            self._rows -= 1
            self._bytes -= size
            dropped += 1
        if dropped:
            total = self._add_counter(_DROPPED, dropped)
            log.warning(
                "outbox %s full (max_rows=%d, max_bytes=%d): dropped the %d oldest message(s), "
                "%d dropped in total",
                self.path,
                self.max_rows,
                self.max_bytes,
                dropped,
                total,
            )

    def pending(self, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
        """Up to ``limit`` stored messages with id > ``after_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxMessage(int(i), t, bytes(p), int(q), bool(r)) for i, t, p, q, r in rows]

    def ack(self, *message_ids: int) -> None:
        """Delete delivered messages in one transaction; ids already gone (dropped in flight) are skipped."""
        with self._lock, self._transaction():
            for message_id in message_ids:
                row = self._db.execute(
                    "SELECT LENGTH(payload) FROM messages WHERE id = ?", (message_id,)
                ).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
                    self._rows -= 1
                    self._bytes -= row[0]

    def depth(self) -> int:
        """Number of messages not yet acknowledged by the broker."""
        with self._lock:
            return self._rows

    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def dropped(self) -> int:
        """Messages dropped because the outbox was full, over the life of this file."""
        with self._lock:
            return self._counter(_DROPPED)

    def next_seq(self, camera: str) -> int:
        """Next value (1, 2, ...) of the per-camera event sequence number, after the last one stored with
        :meth:`put_event` (so it continues across restarts); committed by ``put_event``, not here."""
        with self._lock:
            last = max(self._seq.get(camera, 0), self._counter(f"seq/{camera}"))
            self._seq[camera] = last + 1
            return last + 1

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _add_counter(self, name: str, delta: int) -> int:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, delta),
        )
        return self._counter(name)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
