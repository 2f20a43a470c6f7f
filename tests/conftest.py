from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from train.paths import ENV_VAR, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real shared data folder; tests that need it skip with the reason when it is absent."""
    path = shared_data_dir()
    if not (path / "annotations").is_dir():
        pytest.skip(f"shared data not found at {path} (set {ENV_VAR})")
    return path


@pytest.fixture(scope="session")
def mosquitto_bin() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if path is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    return path
