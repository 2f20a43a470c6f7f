"""Where CLIP weights come from: a local Hugging Face CLIP directory, or seeded random weights.

``source`` is one of:
  * a path to a local Hugging Face CLIP directory (``config.json`` + weights), e.g. openai/clip-vit-base-patch16;
  * ``random``: the real ViT-B/16 architecture with seeded random weights (accuracy meaningless, shapes and
    speed real); anything built from it says ``clip: random`` in its manifest;
  * ``tiny``: a small random CLIP for tests (same code paths, 512-d projection kept).
"""
from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

from edge.snippets import EMBED_DIM



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


def describe(source: str | Path) -> str:
    """What a manifest records: ``real:<dir name>``, ``random`` or ``tiny``."""
    s = str(source)
    return s if s in ("random", "tiny") else f"real:{Path(s).name}"


def is_random(source: str | Path) -> bool:
    return str(source) in ("random", "tiny")


def resolve_config(source: str | Path) -> CLIPConfig:
    """The CLIPConfig for a source; a local directory must hold a ``config.json``."""
    s = str(source)
    if s == "random":
        return vit_b16_config()
    if s == "tiny":
        return tiny_config()
    path = Path(s)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"CLIP source {path} is not a Hugging Face CLIP directory (no config.json); "
            f"expected a local copy of openai/clip-vit-base-patch16, or 'random' / 'tiny'"
        )
    return CLIPConfig.from_pretrained(path)
