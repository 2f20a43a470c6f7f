"""The model bundle: what the device loads, checked before anything runs (numpy only, no torch).

    bundle/
      manifest.json          the contract (``Manifest``): classes, snippet policy, preprocessing, window, levels,
                             smoother, CLIP source, model files, text cache, metrics, versions, sha256 per file
      head.onnx              the causal student, both branches
      clip_visual.onnx       the CLIP image encoder
      text_embeddings.npz    cached prompt features: classes [M], embeddings [L, M, 512], hash, source

``load_bundle(path)`` refuses a bad bundle with a ``BundleError`` that says why: a missing file, a sha256
mismatch, a schema newer than this runtime, classes that differ from the text cache's, a text cache that is not
[levels, classes, 512], ``encode_every`` outside 1..16. A bundle built on random CLIP weights loads with a loud
warning. ``train.export.bundle`` writes bundles.

The head's interface: inputs ``features`` [B, W, 512] float32 (the ring buffer's window, oldest first, valid rows
first), ``mask`` [B, W] bool, ``text`` [L, M, 512] float32 (``Bundle.text_embeddings``); outputs ``binary``
[B, L, W] and ``classes`` [B, L, W, M], per-level probabilities at the input rate. Read the newest valid row;
the smoother takes its per-level binary probabilities, and its class probabilities are the mean over levels.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.preprocess import PreprocessSpec
from edge.smoother import SmootherParams
from edge.snippets import EMBED_DIM, FRAMES_PER_SNIPPET

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
HEAD_INPUTS = ("features", "mask", "text")
HEAD_OUTPUTS = ("binary", "classes")
RANDOM_CLIP_WARNING = "features are not real CLIP: detections are meaningless outside the demo"


class BundleError(ValueError):
    """A bundle the runtime refuses; the message says which file or key and what was expected."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- manifest


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SnippetSpec(_Section):
    frames_per_snippet: int = FRAMES_PER_SNIPPET
    encode_every: int  # frames at offsets 0, K, 2K, ... < 16 of a snippet are encoded (always written by export)
    embed_dim: int = EMBED_DIM


class ClipInfo(_Section):
    source: str  # "random" | "tiny" | "real:<dir>" | "hf:<org/name>"
    random: bool  # True: not real CLIP weights (demo only)
    identity: dict[str, Any] | None = None  # repo id + revision or weights sha256 (train.models.clip_source.identity)
    text: dict[str, Any] | None = None  # the text encoder the prompts were learned with (its identity)


class ModelFile(_Section):
    file: str
    precision: str = "fp32"
    int8: dict[str, Any] | None = None  # calibration.calibrate: method, set size, per-flavour file + gate figures


class TextFile(_Section):
    file: str = "text_embeddings.npz"
    hash: str


class Manifest(_Section):
    """manifest.json, schema version 1."""

    schema_version: int
    name: str = "cplvad-student"
    version: str
    created: str  # ISO 8601 UTC
    dataset: str
    classes: tuple[str, ...]  # class 0 = normal
    snippet: SnippetSpec
    preprocess: dict[str, Any]  # edge.preprocess.PreprocessSpec as a dict
    window: int = Field(ge=1)
    levels: int = Field(ge=1)
    smoother: dict[str, Any]  # edge.smoother.SmootherParams as a dict
    clip: ClipInfo
    models: dict[str, ModelFile]  # "head", "clip_visual" (later more precisions)
    text_embeddings: TextFile
    metrics: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    files: dict[str, str]  # file name -> sha256

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def parse_manifest(data: Any, *, where: str = MANIFEST) -> Manifest:
    """A manifest dict -> ``Manifest``; BundleError naming the key on any problem (newer schemas first)."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: schema_version={version!r}; expected an integer")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{where}: schema_version {version} is newer than this runtime knows ({SCHEMA_VERSION}); "
                          f"update the device software or re-export the bundle with schema {SCHEMA_VERSION}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise BundleError(f"{where}: invalid manifest: {problems}") from None
    if not 1 <= manifest.snippet.encode_every <= FRAMES_PER_SNIPPET:
        raise BundleError(f"{where}: snippet.encode_every={manifest.snippet.encode_every}; expected 1..16")
    if manifest.snippet.frames_per_snippet != FRAMES_PER_SNIPPET or manifest.snippet.embed_dim != EMBED_DIM:
        raise BundleError(f"{where}: snippet {manifest.snippet.model_dump()}; this runtime handles "
                          f"frames_per_snippet={FRAMES_PER_SNIPPET}, embed_dim={EMBED_DIM}")
    if len(manifest.classes) < 2:
        raise BundleError(f"{where}: classes={list(manifest.classes)}; expected the normal class and at least one more")
    return manifest


# ----------------------------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class Bundle:
    """A loaded, checked bundle."""

    path: Path
    manifest: Manifest
    text_embeddings: np.ndarray  # [L, M, 512] float32, the head's ``text`` input

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    @property
    def window(self) -> int:
        return self.manifest.window

    @property
    def levels(self) -> int:
        return self.manifest.levels

    @property
    def encode_every(self) -> int:
        return self.manifest.snippet.encode_every

    @property
    def clip_is_random(self) -> bool:
        return self.manifest.clip.random

    def file(self, name: str) -> Path:
        """Path of a model by its key (``head``, ``clip_visual``) or of any listed file by its name."""
        if name in self.manifest.models:
            return self.path / self.manifest.models[name].file
        if name in self.manifest.files:
            return self.path / name
        raise BundleError(f"{self.path / MANIFEST}: no model or file {name!r}; models: "
                          f"{sorted(self.manifest.models)}, files: {sorted(self.manifest.files)}")

    def preprocess(self) -> PreprocessSpec:
        try:
            return PreprocessSpec.from_dict(self.manifest.preprocess, where=f"{self.path / MANIFEST} preprocess")
        except (TypeError, ValueError) as err:
            raise BundleError(str(err)) from None

    def smoother_params(self) -> SmootherParams:
        data = dict(self.manifest.smoother)
        if "vote_thresholds" in data:
            data["vote_thresholds"] = tuple(data["vote_thresholds"])
        try:
            return SmootherParams(**data)
        except (TypeError, ValueError) as err:
            raise BundleError(f"{self.path / MANIFEST}: smoother {data}: {err}") from None


def read_text_embeddings(path: Path) -> tuple[tuple[str, ...], np.ndarray, str]:
    """text_embeddings.npz -> (classes, embeddings [L, M, E] float32, hash)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"classes", "embeddings", "hash"} - set(z.files)
            if missing:
                raise BundleError(f"{path}: not a text-embeddings file, missing {sorted(missing)}")
            return tuple(str(c) for c in z["classes"]), z["embeddings"].astype(np.float32), str(z["hash"])
    except (OSError, ValueError) as err:
        if isinstance(err, BundleError):
            raise
        raise BundleError(f"{path}: unreadable text embeddings ({err})") from None


def load_bundle(path: str | Path, *, verify_hashes: bool = True) -> Bundle:
    """Load and check a bundle folder; ``verify_hashes=False`` skips the sha256 pass (faster start-up)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST}; expected a bundle folder written by `cplvad export`")
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BundleError(f"{manifest_path}: not readable JSON ({err})") from None
    manifest = parse_manifest(data, where=str(manifest_path))

    needed = {m.file for m in manifest.models.values()} | {manifest.text_embeddings.file}
    unlisted = sorted(needed - set(manifest.files))
    if unlisted:
        raise BundleError(f"{manifest_path}: files {unlisted} have no sha256 in 'files'")
    if "head" not in manifest.models:
        raise BundleError(f"{manifest_path}: models has no 'head' (got {sorted(manifest.models)})")
    for name, digest in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{path}: missing file {name} (listed in {MANIFEST})")
        if verify_hashes and file_sha256(file) != digest:
            raise BundleError(f"{file}: sha256 mismatch: the file changed after export (manifest {digest[:12]}..., "
                              f"file {file_sha256(file)[:12]}...); re-export the bundle")

    text_path = path / manifest.text_embeddings.file
    classes, embeddings, text_hash = read_text_embeddings(text_path)
    if classes != manifest.classes:
        raise BundleError(f"{text_path}: classes {list(classes)} differ from {MANIFEST} classes "
                          f"{list(manifest.classes)}; recompute the cache with `cplvad prompts`")
    expected = (manifest.levels, len(manifest.classes), EMBED_DIM)
    if embeddings.shape != expected:
        raise BundleError(f"{text_path}: embeddings have shape {list(embeddings.shape)}; expected "
                          f"[levels, classes, {EMBED_DIM}] = {list(expected)}")
    finite = np.isfinite(embeddings)
    if not finite.all():
        raise BundleError(f"{text_path}: {int(finite.size - finite.sum())} of {finite.size} embedding values are NaN "
                          "or infinite; every snippet's category scores would be NaN. Recompute the cache with "
                          "`cplvad prompts` from a healthy teacher")
    if text_hash != manifest.text_embeddings.hash:
        raise BundleError(f"{text_path}: hash {text_hash!r} differs from {MANIFEST} text_embeddings.hash "
                          f"{manifest.text_embeddings.hash!r}")

    bundle = Bundle(path, manifest, embeddings)
    bundle.smoother_params()  # refuse bad smoother settings now, not on the first event
    bundle.preprocess()
    if manifest.clip.random:
        log.warning("!!! bundle %s uses CLIP source %r with random weights: %s !!!", path, manifest.clip.source,
                    RANDOM_CLIP_WARNING)
    elif manifest.clip.text and manifest.clip.text.get("random"):
        log.warning("!!! bundle %s: its category prompts were learned through a RANDOM CLIP text encoder (%s): "
                    "category names are meaningless outside the demo !!!", path, manifest.clip.text.get("kind"))
    log.info("bundle %s: %s %s, %d classes, window %d, %d levels, encode_every %d", path, manifest.name,
             manifest.version, len(manifest.classes), manifest.window, manifest.levels,
             manifest.snippet.encode_every)
    return bundle


def write_manifest(folder: str | Path, manifest: Manifest, *, rehash: Iterable[str] = ()) -> Bundle:
    """The one writer of ``manifest.json`` (export, prompts, calibration, random-weight bundles): the sha256 of the
    ``rehash`` files (new or changed) recorded in ``files``, the manifest validated and written, and the bundle
    re-loaded with the device's own loader, which must accept it."""
    folder = Path(folder)
    files = dict(manifest.files) | {name: file_sha256(folder / name) for name in rehash}
    checked = parse_manifest(manifest.model_copy(update={"files": files}).model_dump(mode="json"),
                             where=str(folder / MANIFEST))
    (folder / MANIFEST).write_text(checked.to_json())
    return load_bundle(folder)
