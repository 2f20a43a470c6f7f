from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from showcase.scenes import write_scene_video
from train.paths import ENV_VAR, PROJECT_ROOT, shared_data_dir

# A stand-in for real footage, shaped like the Intel sample car-detection.mp4: 768x432, 377 frames at 12.5 fps
# (23 snippets); an explosion in frames 77..253.
SCENE_VIDEO = {"label": "Explosion", "frames": 377, "fps": 12.5, "size": (768, 432), "seed": 0}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The original public files (``$CPLVAD_SHARED_DATA`` or ``../shared/data``), for extra checks of the
    shipped copies only; tests that use it skip when it is absent (a user's clone)."""
    path = shared_data_dir() or PROJECT_ROOT.parent / "shared" / "data"
    if not (path / "annotations").is_dir():
        pytest.skip(f"original public files not found at {path} (set {ENV_VAR}): extra check skipped")
    return path


@pytest.fixture(scope="session")
def scene_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered street video (mp4v, ``SCENE_VIDEO``): what the tests read where real footage would do."""
    path = tmp_path_factory.mktemp("scene") / "explosion.mp4"
    write_scene_video(path, **SCENE_VIDEO)
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
