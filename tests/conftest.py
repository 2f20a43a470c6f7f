from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
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


Counts = dict[str, int]


@pytest.fixture
def report_delivery(request: pytest.FixtureRequest) -> Callable[[Counts], Counts]:
    """Report a fault test's event counts (produced, delivered, lost, ...): a ``delivery`` property in the
    JUnit XML and an INFO line on the ``faults`` logger (shown with ``--log-cli-level=INFO``)."""

    def report(counts: Counts) -> Counts:
        # what record_property does, without its warning under the default junit_family (xunit2)
        request.node.user_properties.append(("delivery", json.dumps(counts)))
        logging.getLogger("faults").info("%s delivery: %s", request.node.name, json.dumps(counts))
        return counts

    return report
