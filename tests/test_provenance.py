"""train.data.provenance: feature records, the text encoder that follows them, and the export checks."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from train.data.provenance import (check_export, check_text, feature_record, label, resolve_text_source,
                                   same_weights, source_of)

HUB = {"source": "openai/clip-vit-base-patch16", "kind": "hub", "random": False,
       "repo_id": "openai/clip-vit-base-patch16", "revision": "57c216476eefef5ab752ec549e440a49ae4ae5f3",
       "weights_sha256": "aa" * 32}
FOLDER = {"source": "clip", "kind": "folder", "random": False, "path": "/models/clip", "weights_sha256": "aa" * 32}
OTHER = {"source": "/models/other", "kind": "folder", "random": False, "path": "/models/other",
         "weights_sha256": "bb" * 32}
TINY = {"source": "tiny", "kind": "tiny", "random": True, "seed": 0}


def _folder(root: Path, name: str, clip: dict | None, encode_every: int = 16) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "v__0.npy").write_bytes(b"")
    if clip is not None:
        (folder / "extract.json").write_text(json.dumps({"clip_identity": clip, "encode_every": encode_every}))
    return folder / "v__0.npy"


def test_same_weights_by_sha_then_repo_revision_then_random_seed() -> None:
    assert same_weights(HUB, FOLDER) and not same_weights(HUB, OTHER)
    no_sha = {k: v for k, v in HUB.items() if k != "weights_sha256"}
    assert same_weights(no_sha, HUB) and not same_weights(no_sha, no_sha | {"revision": "x"})
    assert same_weights(TINY, dict(TINY)) and not same_weights(TINY, TINY | {"seed": 1})
    assert not same_weights(TINY, TINY | {"kind": "random"}) and not same_weights(TINY, HUB)


def test_labels_and_sources_name_the_weights() -> None:
    assert label(HUB) == "openai/clip-vit-base-patch16@57c216476eef (weights sha256 aaaaaaaaaaaa)"
    assert label(TINY) == "'tiny' (RANDOM weights, seed 0)" and label(None) == "an unrecorded encoder"
    assert source_of(HUB) == "openai/clip-vit-base-patch16@57c216476eefef5ab752ec549e440a49ae4ae5f3"
    assert source_of(FOLDER) == "/models/clip" and source_of(TINY) == "tiny"


def test_feature_record_reads_the_folders_and_refuses_mixtures(tmp_path: Path) -> None:
    a, b = _folder(tmp_path, "a", HUB), _folder(tmp_path, "b", FOLDER)
    record = feature_record([a, b, a])
    assert record["clip"] == HUB and record["encode_every"] == 16 and len(record["folders"]) == 2
    assert feature_record([_folder(tmp_path, "bare", None)]) is None
    c = _folder(tmp_path, "c", OTHER)
    with pytest.raises(ValueError, match=r"mix CLIP encoders: .*a was extracted with openai.*c with /models/other"):
        feature_record([a, c])
    d = _folder(tmp_path, "d", HUB, encode_every=1)
    with pytest.raises(ValueError, match="mix snippet policies: .* encode_every=16, .* encode_every=1"):
        feature_record([a, d])


def test_text_source_auto_follows_the_features_or_asks() -> None:
    record = {"clip": HUB, "encode_every": 16}
    assert resolve_text_source("auto", record, where="d") == source_of(HUB)
    assert resolve_text_source("tiny", record, where="d") == "tiny"
    with pytest.raises(ValueError, match="features of data/x carry no record.*openai/clip-vit-base-patch16"):
        resolve_text_source("auto", None, where="data/x")


def test_real_text_must_match_real_features_and_random_text_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    record = {"clip": HUB}
    check_text(FOLDER, record, where="d")  # same weights
    with pytest.raises(ValueError, match="text_source is /models/other .* features of d were extracted with openai"):
        check_text(OTHER, record, where="d")
    with caplog.at_level(logging.WARNING):
        check_text(TINY, record, where="d")
    assert "random text" in caplog.text


def test_export_checks_encoder_and_policy(caplog: pytest.LogCaptureFixture) -> None:
    prov = {"features": {"clip": HUB, "encode_every": 16}}
    check_export(prov, FOLDER, 16, run="r", clip_source="/models/clip")
    with pytest.raises(ValueError, match=r"--clip /models/other is /models/other .* extracted with openai/clip-vit-"
                                         r"base-patch16@57c2.*--clip openai/clip-vit-base-patch16@57c2"):
        check_export(prov, OTHER, 16, run="r", clip_source="/models/other")
    with pytest.raises(ValueError, match="--encode-every 4, but the run r .* encode_every=16"):
        check_export(prov, HUB, 4, run="r", clip_source="x")
    with caplog.at_level(logging.WARNING):
        check_export({"features": None}, OTHER, 4, run="r", clip_source="x")
    assert "cannot check" in caplog.text
