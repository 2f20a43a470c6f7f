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
    with Outbox(path, max_rows=2) as box:
        assert [m.payload for m in box.pending()] == [b"\x01", b"\x02"]
        assert box.dropped() == 1 and box.depth() == 2 and box.size_bytes() == 2
        assert box.next_seq("cam-a") == 3 and box.next_seq("cam-b") == 2


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
