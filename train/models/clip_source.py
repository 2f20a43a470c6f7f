"""Where CLIP weights come from: a Hugging Face id, a local Hugging Face CLIP folder, or seeded random weights.

``source`` is one of:
  * a Hugging Face id such as ``openai/clip-vit-base-patch16`` (``org/name``, optionally ``@revision``): loaded by
    ``from_pretrained`` through the normal Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``); with
    ``HF_HUB_OFFLINE=1`` only the cache is read;
  * a path to a local Hugging Face CLIP folder (``config.json`` + weights), e.g. a ``save_pretrained`` copy;
  * ``random``: the real ViT-B/16 architecture with seeded random weights (accuracy meaningless, shapes and
    speed real); anything built from it says ``clip: random`` in its manifest;
  * ``tiny``: a small random CLIP for tests (same code paths, 512-d projection kept).

:func:`identity` names the weights for the records that must not mix encoders (feature folders, runs, bundles):
the repo id and the revision (the commit hash of the cache's snapshot folder) for a Hugging Face id, and for both
real kinds the sha256 of the weight files, so the same weights match whether loaded by id or from a folder.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

from edge.snippets import EMBED_DIM

RANDOM_SOURCES = ("random", "tiny")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")  # org/name[@revision]
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")  # in from_pretrained's order of preference


def vit_b16_config() -> CLIPConfig:
    """The published openai/clip-vit-base-patch16 architecture."""
    text = CLIPTextConfig(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                          num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=EMBED_DIM, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=16, hidden_act="quick_gelu", projection_dim=EMBED_DIM)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=EMBED_DIM)


def tiny_config() -> CLIPConfig:
    """A small CLIP with the real vocabulary, input size and projection size, for fast tests."""
    text = CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=EMBED_DIM, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=224, patch_size=32, hidden_act="quick_gelu", projection_dim=EMBED_DIM)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=EMBED_DIM)


def is_random(source: str | Path) -> bool:
    return str(source) in RANDOM_SOURCES


def is_hub_id(source: str | Path) -> bool:
    """``org/name`` (not an existing path) is a Hugging Face id."""
    s = str(source)
    return not is_random(s) and not Path(s).exists() and HUB_ID.match(s) is not None


@dataclass(frozen=True)
class Resolved:
    """A real source made concrete: what ``from_pretrained`` loads, and the local folder holding its files."""

    spec: str  # as given
    load: str  # what from_pretrained is called with: the repo id or the folder
    revision: str | None  # from_pretrained's revision argument (hub ids only)
    folder: Path  # the snapshot folder (hub) or the folder itself
    repo_id: str | None = None
    commit: str | None = None  # the snapshot folder's name: the commit hash the cache holds


def _hub_error(repo_id: str, err: Exception) -> FileNotFoundError:
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    return FileNotFoundError(
        f"CLIP source {repo_id!r}: not found as a Hugging Face id{' in the offline cache' if offline else ''} "
        f"({constants.HF_HUB_CACHE}; HF_HUB_OFFLINE={'1' if offline else '0'}): {str(err).splitlines()[0]}; "
        f"expected a cached or downloadable id such as openai/clip-vit-base-patch16 (download it once with "
        f"`hf download {repo_id}`, or set HF_HOME / HF_HUB_CACHE to the cache holding it), a local Hugging Face "
        f"CLIP folder, or 'random' / 'tiny'")


def resolve(source: str | Path) -> Resolved:
    """A Hugging Face id or local folder -> :class:`Resolved`; FileNotFoundError with the fix otherwise."""
    s = str(source)
    if is_random(s):
        raise ValueError(f"{s!r} is not a real CLIP source")
    if is_hub_id(s):
        from huggingface_hub import hf_hub_download

        repo_id, _, revision = s.partition("@")
        try:  # the cache's copy (offline) or a download; either way a path inside snapshots/<commit>/
            config = Path(hf_hub_download(repo_id, "config.json", revision=revision or None))
        except Exception as err:  # noqa: BLE001 - the hub raises many kinds; one clear message for all
            raise _hub_error(s, err) from None
        return Resolved(s, repo_id, revision or None, config.parent, repo_id, config.parent.name)
    path = Path(s)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"CLIP source {s}: not a Hugging Face id (org/name) nor a local Hugging Face CLIP folder (no config.json "
            f"in {path}); expected e.g. openai/clip-vit-base-patch16, a save_pretrained folder, or 'random' / 'tiny'")
    return Resolved(s, str(path), None, path)


def describe(source: str | Path) -> str:
    """What a manifest records: ``hf:<org/name>``, ``real:<folder name>``, ``random`` or ``tiny``."""
    s = str(source)
    if is_random(s):
        return s
    return f"hf:{s}" if is_hub_id(s) else f"real:{Path(s).name}"


def resolve_config(source: str | Path) -> CLIPConfig:
    """The CLIPConfig for a source (a Hugging Face id is read through the cache)."""
    s = str(source)
    if s == "random":
        return vit_b16_config()
    if s == "tiny":
        return tiny_config()
    real = resolve(s)
    return CLIPConfig.from_pretrained(real.load, revision=real.revision)


def pretrained_args(source: str | Path) -> tuple[str, dict[str, Any]]:
    """``(name_or_path, kwargs)`` for ``from_pretrained`` of a real source."""
    real = resolve(source)
    return real.load, ({"revision": real.revision} if real.revision else {})


def weight_files(folder: Path) -> list[Path]:
    """The weight files ``from_pretrained`` reads in ``folder`` (safetensors when present, else .bin)."""
    for pattern in WEIGHT_PATTERNS:
        found = sorted(folder.glob(pattern))
        if found:
            return found
    return []


@functools.lru_cache(maxsize=8)
def _weights_sha256(files: tuple[tuple[str, int, int], ...], folder: str) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in files:
        digest.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: Path) -> str | None:
    """sha256 over the weight files' names and bytes (cached per process while the files are unchanged)."""
    files = weight_files(folder)
    if not files:
        return None
    stats = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _weights_sha256(stats, str(folder))


def identity(source: str | Path, seed: int = 0) -> dict[str, Any]:
    """The weights' identity as recorded in feature folders, runs and bundles (compared by ``same_weights``).

    Call it after loading: a Hugging Face id's weights are then in the cache's snapshot folder.
    """
    s = str(source)
    if is_random(s):
        return {"source": s, "kind": s, "random": True, "seed": seed}
    real = resolve(s)
    ident: dict[str, Any] = {"source": s, "kind": "hub" if real.repo_id else "folder", "random": False}
    if real.repo_id:
        ident |= {"repo_id": real.repo_id, "revision": real.commit}
    else:
        ident["path"] = str(Path(s).resolve())
    ident["weights_sha256"] = weights_sha256(real.folder)
    return ident
