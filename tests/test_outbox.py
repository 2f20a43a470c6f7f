"""The durable outbox: order, acks, bounds, counters, permissions, crash safety, threads."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.outbox import Outbox, OutboxConfig

ROOT = Path(__file__).resolve().parents[1]


def test_put_pending_ack_in_order(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        ids = [box.put(f"t/{i}", f"m{i}".encode(), qos=1, retain=i == 2) for i in range(5)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert [m.payload for m in box.pending()] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert [m.topic for m in box.pending(limit=2)] == ["t/0", "t/1"]
        assert [m.id for m in box.pending(after_id=ids[2])] == ids[3:]
        assert box.pending()[2].retain and not box.pending()[1].retain
        box.ack(ids[1], ids[3])
        box.ack(ids[1])  # already gone: no-op
        assert [m.payload for m in box.pending()] == [b"m0", b"m2", b"m4"]
        assert box.depth() == 3 and box.size_bytes() == 6


def test_bounded_by_rows_drops_oldest_with_counter_and_warning(tmp_path: Path, caplog) -> None:
    with Outbox(tmp_path / "o.db", max_rows=3) as box, caplog.at_level(logging.WARNING):
        for i in range(5):
            box.put("t", bytes([i]))
        assert [m.payload for m in box.pending()] == [b"\x02", b"\x03", b"\x04"]
        assert box.depth() == 3 and box.dropped() == 2
    assert "dropped the 1 oldest" in caplog.text and "2 dropped in total" in caplog.text


def test_bounded_by_bytes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=1024) as box:
        box.put("t", b"a" * 400)
        box.put("t", b"b" * 400)
        box.put("t", b"c" * 400)  # 1200 > 1024: the oldest goes
        assert [m.payload[:1] for m in box.pending()] == [b"b", b"c"]
        assert box.size_bytes() == 800 and box.dropped() == 1
        with pytest.raises(ValueError, match="more than the outbox limit max_bytes=1024"):
            box.put("t", b"x" * 1025)
        assert box.depth() == 2


def test_messages_and_counters_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_rows=2) as box:
        for i in range(3):
            box.put("t", bytes([i]))
        assert [box.next_seq("cam-a"), box.next_seq("cam-a"), box.next_seq("cam-b")] == [1, 2, 1]
        box.put_event("cam-a", "t", b"e1", seq=1, open_event=None)
        box.put_event("cam-a", "t", b"e2", seq=2, open_event=None)
        box.put_event("cam-b", "t", b"e3", seq=1, open_event=None)
    with Outbox(path, max_rows=2) as box:
        assert [m.payload for m in box.pending()] == [b"e2", b"e3"]
        assert box.dropped() == 4 and box.depth() == 2 and box.size_bytes() == 4
        assert box.next_seq("cam-a") == 3 and box.next_seq("cam-b") == 2


def test_seq_is_committed_with_its_message_only(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        assert box.next_seq("cam") == 1
        box.put_event("cam", "t", b"first", seq=1, open_event=None)
        assert [box.next_seq("cam"), box.next_seq("cam")] == [2, 3]  # handed out, never stored (killed here)
    with Outbox(path) as box:
        assert box.next_seq("cam") == 2  # no gap: 2 and 3 never reached anyone
        box.put_event("cam", "t", b"x", seq=7, open_event=None)  # the counter follows what is stored
        assert box.next_seq("cam") == 8


def test_open_event_follows_the_stored_messages_of_each_camera(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    start = {"type": "start", "event_id": "e", "seq": 1}
    update = {**start, "type": "update", "seq": 2}
    with Outbox(path) as box:
        box.put_event("a", "t/a", b"1", seq=1, open_event=start)
        box.put_event("b", "t/b", b"1", seq=1, open_event=start)
        box.put_event("a", "t/a", b"2", seq=2, open_event=update)
        box.put_event("b", "t/b", b"2", seq=2, open_event=None)  # b's event ended
    with Outbox(path) as box:
        assert box.open_events() == {"a": update}
        box.put_event("a", "t/a", b"3", seq=3, open_event=None)
        assert box.open_events() == {}


def test_open_event_rolls_back_with_its_message(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=1024) as box:
        with pytest.raises(ValueError, match="max_bytes"):
            box.put_event("a", "t", b"x" * 2000, seq=1, open_event={"type": "start"})
        with pytest.raises(ValueError):  # NaN cannot be stored: nothing of the transaction stays
            box.put_event("a", "t", b"ok", seq=1, open_event={"type": "start", "score": float("nan")})
        assert box.open_events() == {} and box.depth() == 0 and box.next_seq("a") == 1


def test_version_1_outbox_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with sqlite3.connect(path) as db:  # an outbox written by the previous version, with a message to replay
        db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);"
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO messages (topic, payload, qos, retain) VALUES ('t', x'6f6c64', 1, 0);"
            "INSERT INTO counters VALUES ('seq/cam', 41);"
            "PRAGMA user_version=1;"
        )
    with Outbox(path) as box:
        assert [m.payload for m in box.pending()] == [b"old"]
        assert box.next_seq("cam") == 42 and box.open_events() == {}


def test_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "o.db"
    with Outbox(path) as box:
        box.put("t", b"x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((path.parent / "o.db-wal").stat().st_mode) == 0o600


def test_existing_file_is_tightened_to_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Outbox(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_one_process_per_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path):
        with pytest.raises(RuntimeError, match="in use by another process"):
            Outbox(path)


def test_not_sqlite_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match=f"outbox {path}: cannot open as SQLite"):
        Outbox(path)


def test_config_defaults_build_an_outbox(tmp_path: Path) -> None:
    config = OutboxConfig(path=tmp_path / "o.db", max_rows=10)
    with Outbox.from_config(config) as box:
        assert box.max_rows == 10 and box.max_bytes == config.max_bytes


_WRITER = """
import sys
from edge.outbox import Outbox
box = Outbox(sys.argv[1])
for i in range(100000):
    message_id = box.put("cam/events", b"%d" % i * 50)
    if i % 3 == 0:
        box.ack(message_id)
    print(message_id, i % 3 == 0, flush=True)
"""


def test_survives_sigkill_mid_writes(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    reported = []
    for line in child.stdout:
        message_id, acked = line.split()
        reported.append((int(message_id), acked == "True"))
        if len(reported) == 150:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    with Outbox(path) as box:
        stored = {m.id for m in box.pending(limit=1_000_000)}
        # everything the writer saw committed is there (it may have committed a few more before dying)
        assert {i for i, acked in reported if not acked} <= stored
        assert not {i for i, acked in reported if acked} & stored
        assert box.depth() == len(stored)
        next_id = box.put("cam/events", b"after")
        assert next_id > max(stored)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_put_and_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", fsync=False)
    done = threading.Event()
    acked: list[int] = []

    def acker() -> None:
        while not done.is_set() or box.depth():
            ids = [m.id for m in box.pending(limit=7)]
            box.ack(*ids)
            acked.extend(ids)

    thread = threading.Thread(target=acker)
    thread.start()
    put = [box.put("t", b"x" * (i % 5)) for i in range(400)]
    done.set()
    thread.join(timeout=30)
    assert sorted(set(acked)) == put and box.depth() == 0 and box.size_bytes() == 0
    box.close()
