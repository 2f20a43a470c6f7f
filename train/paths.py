"""Where the project finds the public data it ships (CLIP vocabulary, class text embeddings, real layouts).

The files live in ``train/data/public/`` (installed with the package; sources and licences in its README).
``$CPLVAD_SHARED_DATA`` optionally points at a folder of the original files (``annotations/``, ``gt/``,
``text_embeddings/``, ``clip/``, ``videos/``), which then take precedence; nothing needs it.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PUBLIC_DATA = Path(__file__).resolve().parent / "data" / "public"
ENV_VAR = "CPLVAD_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """The optional folder of original public files, ``$CPLVAD_SHARED_DATA``; None when unset."""
    value = os.environ.get(ENV_VAR)
    return Path(value).resolve() if value else None


def public_file(*parts: str) -> Path:
    """A shipped public data file (e.g. ``public_file("clip", "bpe_simple_vocab_16e6.txt.gz")``); the
    ``$CPLVAD_SHARED_DATA`` copy when that folder has one."""
    override = shared_data_dir()
    if override is not None and override.joinpath(*parts).is_file():
        return override.joinpath(*parts)
    path = PUBLIC_DATA.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the package's public data is incomplete (reinstall it)")
    return path
