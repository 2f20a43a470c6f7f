"""What snippet features were made with, carried from the feature folder to the run and the bundle.

The extractor (``train.data.extract``) records its settings in ``<feature folder>/extract.json``, among them the
CLIP weights' identity (``clip_identity``: see ``train.models.clip_source.identity``) and the snippet policy
(``encode_every``). A training run reads the records of the folders its training features live in and writes
``provenance.json`` (features' encoder and policy, the text encoder); distillation carries it to the student run;
export refuses a bundle whose CLIP image encoder or ``encode_every`` differs from the features'. Features with no
record (the public VadCLIP release, generated benchmarks) are "unrecorded": export then says it cannot check.
Torch-free.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_FILE = "extract.json"  # in a feature folder, written by train.data.extract
RUN_FILE = "provenance.json"  # in a teacher or student run folder
AUTO = "auto"  # model.text_source: the text encoder of the features' own CLIP


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two CLIP identities name the same weights: random kind and seed; the weights' sha256 when both
    have it; else the repo id and revision."""
    if a.get("random") or b.get("random"):
        return a.get("kind") == b.get("kind") and a.get("seed") == b.get("seed")
    if a.get("weights_sha256") and b.get("weights_sha256"):
        return a["weights_sha256"] == b["weights_sha256"]
    return bool(a.get("repo_id")) and (a.get("repo_id"), a.get("revision")) == (b.get("repo_id"), b.get("revision"))


def label(ident: dict[str, Any] | None) -> str:
    """A short human name for a CLIP identity, for messages."""
    if not ident:
        return "an unrecorded encoder"
    if ident.get("random"):
        return f"'{ident.get('kind')}' (RANDOM weights, seed {ident.get('seed')})"
    sha = (ident.get("weights_sha256") or "?")[:12]
    if ident.get("repo_id"):
        return f"{ident['repo_id']}@{(ident.get('revision') or '?')[:12]} (weights sha256 {sha})"
    return f"{ident.get('path', ident.get('source'))} (weights sha256 {sha})"


def source_of(ident: dict[str, Any]) -> str:
    """The CLIP source string that loads these weights again: ``repo@commit``, the folder, or random/tiny."""
    if ident.get("random"):
        return str(ident["kind"])
    if ident.get("repo_id"):
        return f"{ident['repo_id']}@{ident['revision']}" if ident.get("revision") else str(ident["repo_id"])
    return str(ident.get("path") or ident["source"])


def feature_record(paths: Iterable[str | Path]) -> dict[str, Any] | None:
    """``{"clip": identity | None, "encode_every": K | None, "folders": [...]}`` of the folders holding the
    feature files ``paths``; None when no folder has a record. Two folders made with another encoder or
    policy are a ValueError naming both."""
    records: dict[Path, dict] = {}
    for folder in sorted({Path(p).parent for p in paths}):
        path = folder / RECORD_FILE
        if path.is_file():
            records[folder] = json.loads(path.read_text())
    if not records:
        return None
    (first, ref), *others = records.items()
    for folder, rec in others:
        a, b = ref.get("clip_identity"), rec.get("clip_identity")
        if (a is None) != (b is None) or (a and b and not same_weights(a, b)):
            raise ValueError(f"the training features mix CLIP encoders: {first} was extracted with {label(a)}, "
                             f"{folder} with {label(b)}; extract them all with one --clip")
        if ref.get("encode_every") != rec.get("encode_every"):
            raise ValueError(f"the training features mix snippet policies: {first} has encode_every="
                             f"{ref.get('encode_every')}, {folder} encode_every={rec.get('encode_every')}; extract "
                             f"them all with one --encode-every")
    return {"clip": ref.get("clip_identity"), "encode_every": ref.get("encode_every"),
            "folders": [str(f) for f in records]}


def resolve_text_source(text_source: str, record: dict[str, Any] | None, *, where: str) -> str:
    """The text encoder a run uses: ``auto`` follows the features' recorded CLIP; an explicit real encoder must
    match the features'. ``where`` names what holds the features, for messages."""
    clip = (record or {}).get("clip")
    if text_source == AUTO:
        if not clip:
            raise ValueError(
                f"model.text_source=auto follows the CLIP the features were extracted with, but the features of "
                f"{where} carry no record ({RECORD_FILE} beside them, written by train.data.extract); set "
                f"model.text_source to that CLIP (openai/clip-vit-base-patch16 for the public VadCLIP release) or, "
                f"for tests only, to random / tiny")
        return source_of(clip)
    return text_source


def check_text(text_ident: dict[str, Any], record: dict[str, Any] | None, *, where: str) -> None:
    """Refuse real text weights other than the features' real image weights; warn loudly on random text."""
    clip = (record or {}).get("clip")
    if text_ident.get("random"):
        log.warning("the CLIP TEXT encoder is %s: the category branch aligns video with random text; results "
                    "are for tests only (set model.text_source to the features' CLIP, or leave it 'auto')",
                    label(text_ident))
        return
    if clip and not clip.get("random") and not same_weights(clip, text_ident):
        raise ValueError(f"model.text_source is {label(text_ident)} but the features of {where} were extracted "
                         f"with {label(clip)}; use the same CLIP for both (model.text_source=auto)")


def check_export(run_prov: dict[str, Any] | None, clip_ident: dict[str, Any], encode_every: int, *,
                 run: str | Path, clip_source: str) -> None:
    """Refuse a bundle whose image encoder or snippet policy differs from the run's features'."""
    features = (run_prov or {}).get("features") or {}
    recorded = features.get("clip")
    if recorded is None:
        log.warning("the run %s records no CLIP encoder for its features (no %s beside them): cannot check that "
                    "--clip %s is the encoder they were extracted with", run, RECORD_FILE, clip_source)
    elif not same_weights(recorded, clip_ident):
        raise ValueError(f"--clip {clip_source} is {label(clip_ident)}, but the run {run} was trained on features "
                         f"extracted with {label(recorded)}; export with that encoder (--clip "
                         f"{source_of(recorded)}) or re-extract the features")
    policy = features.get("encode_every")
    if policy is not None and policy != encode_every:
        raise ValueError(f"--encode-every {encode_every}, but the run {run} was trained on features extracted with "
                         f"encode_every={policy}: the device would compute other features than the model learned; "
                         f"export with --encode-every {policy} or re-extract the features with --encode-every "
                         f"{encode_every}")


def read_run(run: str | Path) -> dict[str, Any] | None:
    path = Path(run) / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_run(run: str | Path, provenance: dict[str, Any]) -> Path:
    path = Path(run) / RUN_FILE
    path.write_text(json.dumps(provenance, indent=2) + "\n")
    return path
