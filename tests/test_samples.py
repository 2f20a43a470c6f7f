"""Shipped public data lookup and the optional sample videos (fetched over a real local HTTP server)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from train.data import samples
from train.paths import ENV_VAR, PUBLIC_DATA, public_file


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(samples.CACHE_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path / "cache" / "videos"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: (base URL, folder)."""
    folder = tmp_path / "origin"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()


def test_public_files_ship_with_the_package_and_the_override_wins(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert public_file("clip", "bpe_simple_vocab_16e6.txt.gz") == PUBLIC_DATA / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    (tmp_path / "text_embeddings").mkdir()
    (tmp_path / "text_embeddings" / "ucf-prompt.npy").write_bytes(b"x")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert public_file("text_embeddings", "ucf-prompt.npy") == tmp_path / "text_embeddings" / "ucf-prompt.npy"
    assert public_file("text_embeddings", "xd-prompt.npy").parent == PUBLIC_DATA / "text_embeddings"  # not there
    with pytest.raises(FileNotFoundError, match="no-such.npy not found"):
        public_file("no-such.npy")


def test_fetch_checks_the_hash_and_keeps_the_file_in_the_cache(cache: Path, server: tuple[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, origin = server
    (origin / "a.mp4").write_bytes(b"video a")
    (origin / "b.mp4").write_bytes(b"tampered")
    monkeypatch.setattr(samples, "ORIGIN", url)
    monkeypatch.setattr(samples, "SAMPLES", {"a.mp4": hashlib.sha256(b"video a").hexdigest(),
                                             "b.mp4": hashlib.sha256(b"video b").hexdigest()})
    assert samples.sample_videos() == []  # nothing local, no fetch asked
    assert samples.download("a.mp4") == cache / "a.mp4" and (cache / "a.mp4").read_bytes() == b"video a"
    with pytest.raises(OSError, match="SHA-256 mismatch"):
        samples.download("b.mp4")
    assert sorted(p.name for p in cache.iterdir()) == ["a.mp4"]  # no partial file left
    (origin / "a.mp4").unlink()
    assert samples.sample_video("a.mp4", fetch=True) == cache / "a.mp4"  # from the cache, not the origin


def test_offline_fetch_skips_with_one_line(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(samples, "ORIGIN", "http://127.0.0.1:9/")  # discard port: connection refused
    with caplog.at_level(logging.WARNING, logger=samples.__name__):
        assert samples.sample_videos(fetch=True) == []
    assert len(caplog.records) == 1 and "skipping it" in caplog.records[0].getMessage()
