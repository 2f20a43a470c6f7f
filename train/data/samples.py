"""Optional real sample footage: two short videos from intel-iot-devkit/sample-videos (CC-BY-4.0).

Nothing needs them (tests and the demo render their own scenes); the demo's ``--samples``, the CLIP export's
check and the benchmarks use them when present. :func:`sample_videos` returns the local copies, looked up in
``$CPLVAD_SHARED_DATA/videos/`` and then the cache folder (``$CPLVAD_CACHE``, default
``~/.cache/cplvad-edge``)/``videos/``; with ``fetch=True`` it downloads the missing ones from GitHub into the
cache (checked by SHA-256) and, offline, logs one line and returns what it has.

Attribution: "car-detection.mp4" and "one-by-one-person-detection.mp4", Intel Corporation,
https://github.com/intel-iot-devkit/sample-videos, licensed under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/); used unmodified.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from train.paths import shared_data_dir

log = logging.getLogger(__name__)

ORIGIN = "https://github.com/intel-iot-devkit/sample-videos/raw/master/"
SAMPLES = {  # name -> SHA-256 of the published file
    "car-detection.mp4": "d31e0ebf194cc16e50eea784e7c3b0b1bb7976a4fb9b3fec26cb92a6704cca34",
    "one-by-one-person-detection.mp4": "a5964aa259099a482a8b360ffc2c57b5a30f84d5919236a4dad01f8e929ac07c",
}
CACHE_VAR = "CPLVAD_CACHE"


def cache_dir() -> Path:
    """Where fetched samples are kept: ``$CPLVAD_CACHE/videos`` or ``~/.cache/cplvad-edge/videos``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cplvad-edge"
    root = os.environ.get(CACHE_VAR) or default
    return Path(root) / "videos"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_sample(name: str) -> Path | None:
    """The local copy of one sample video, or None."""
    shared = shared_data_dir()
    for folder in ([shared / "videos"] if shared is not None else []) + [cache_dir()]:
        if (folder / name).is_file():
            return folder / name
    return None


def download(name: str, timeout_s: float = 20.0) -> Path:
    """Fetch one sample into the cache and check its hash; raises OSError (offline, HTTP, bad hash)."""
    if name not in SAMPLES:
        raise ValueError(f"sample {name!r}: expected one of {', '.join(SAMPLES)}")
    target = cache_dir() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with urllib.request.urlopen(ORIGIN + name, timeout=timeout_s) as response, partial.open("wb") as f:
        while block := response.read(1 << 20):
            f.write(block)
    if sha256(partial) != SAMPLES[name]:
        partial.unlink()
        raise OSError(f"{ORIGIN + name}: content differs from the published file (SHA-256 mismatch)")
    partial.replace(target)
    log.info("fetched %s (%.1f MB) into %s", name, target.stat().st_size / 2**20, target.parent)
    return target


def sample_video(name: str, fetch: bool = False) -> Path | None:
    """The local copy of one sample video; ``fetch`` downloads it when missing (None, with one log line, when
    that fails, e.g. offline)."""
    path = find_sample(name)
    if path is None and fetch:
        try:
            path = download(name)
        except OSError as e:  # URLError and timeouts are OSErrors
            log.warning("sample video %s not fetched from %s (%s): skipping it", name, ORIGIN,
                        getattr(e, "reason", e))
    return path


def sample_videos(fetch: bool = False) -> list[Path]:
    """Local copies of the sample videos (sorted by name); ``fetch`` downloads the missing ones first."""
    found = []
    for name in sorted(SAMPLES):
        path = sample_video(name, fetch)
        if path is None and fetch:
            return found  # offline: one message, not one per video
        if path is not None:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    """``cplvad samples``: fetch the sample videos into the cache and list them."""
    argparse.ArgumentParser(prog="cplvad samples", description=main.__doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    found = sample_videos(fetch=True)
    for path in found:
        print(path)
    return 0 if len(found) == len(SAMPLES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
