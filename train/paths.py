"""Where the project finds its shared real data (annotations, CLIP vocabulary, sample videos)."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "CPLVAD_SHARED_DATA"


def shared_data_dir() -> Path:
    """The shared data folder: ``$CPLVAD_SHARED_DATA`` or ``../shared/data`` beside the project."""
    return Path(os.environ.get(ENV_VAR, PROJECT_ROOT.parent / "shared" / "data")).resolve()


def require_shared_data(*parts: str) -> Path:
    """Path inside the shared data folder; a clear error when it is absent."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: set {ENV_VAR} to the folder holding annotations/, gt/, text_embeddings/, "
            f"clip/ and videos/"
        )
    return path
