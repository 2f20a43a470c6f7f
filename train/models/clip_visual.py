"""The frozen CLIP image encoder: pixels [N,3,224,224] -> image_embeds [N,512], the ONNX export boundary.

``image_embeds`` is the visual projection's output, not L2-normalised (the snippet-feature contract, DESIGN.md
section 3). Sources are those of :mod:`train.models.clip_source`: a Hugging Face id or a local Hugging Face CLIP folder
(real weights), ``random`` (the real ViT-B/16 with seeded random weights) or ``tiny`` (a small random CLIP for tests).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from transformers import CLIPVisionModelWithProjection

from edge.backends import TensorSpec, check_feeds
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME, CLIP_SIZE
from train.models.clip_source import EMBED_DIM, describe, is_random, pretrained_args, resolve_config

log = logging.getLogger(__name__)


class CLIPVisual(nn.Module):
    """CLIP vision tower + projection; ``forward`` is exactly what gets exported."""

    def __init__(self, vision: CLIPVisionModelWithProjection, source: str) -> None:
        super().__init__()
        self.vision = vision
        self.source = source  # describe(source): what manifests record

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # pixels (N, 3, 224, 224) normalised as edge.preprocess does -> (N, 512)
        return self.vision(pixel_values=pixels).image_embeds


def _load_pretrained(source: str | Path) -> CLIPVisionModelWithProjection:
    """Vision tower + projection from a full CLIP checkpoint (id or folder); missing vision weights are an error."""
    path, kwargs = pretrained_args(source)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the text tower's weights are "unexpected" here, by design
    try:
        model, info = CLIPVisionModelWithProjection.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ValueError(f"CLIP checkpoint {path} lacks {len(missing)} vision weights (e.g. {missing[:3]}); "
                         f"expected a full CLIP ViT-B/16 checkpoint such as openai/clip-vit-base-patch16")
    return model


def load_clip_visual(source: str | Path, seed: int = 0) -> CLIPVisual:
    """The frozen image encoder of ``source`` in eval mode; random sources are initialised from ``seed``."""
    config = resolve_config(source)
    if is_random(source):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vision = CLIPVisionModelWithProjection(config.vision_config)
    else:
        vision = _load_pretrained(source)
    vision_config = vision.config
    if vision_config.projection_dim != EMBED_DIM or vision_config.image_size != CLIP_SIZE:
        raise ValueError(f"CLIP source {source}: projection {vision_config.projection_dim}-d at "
                         f"{vision_config.image_size} px, expected {EMBED_DIM}-d at {CLIP_SIZE} px (ViT-B/16)")
    model = CLIPVisual(vision.eval(), describe(source)).eval()
    model.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("CLIP visual %s: %.1fM parameters%s", describe(source), n_params / 1e6,
             " (RANDOM weights: features carry no meaning)" if is_random(source) else "")
    return model


class TorchCLIPBackend:
    """A :class:`edge.backends.InferenceBackend` over a torch :class:`CLIPVisual` (for training-side tools)."""

    def __init__(self, model: CLIPVisual, *, threads: int | None = None, device: str | None = None) -> None:
        self.device = torch.device(device or "cpu")
        self.model = model.eval().to(self.device)
        if threads is not None:
            torch.set_num_threads(threads)
        self.inputs = (TensorSpec(CLIP_INPUT_NAME, ("batch", 3, CLIP_SIZE, CLIP_SIZE), np.dtype(np.float32)),)
        self.outputs = (TensorSpec(CLIP_OUTPUT_NAME, ("batch", EMBED_DIM), np.dtype(np.float32)),)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.inputs, feeds, model=f"torch CLIP {self.model.source}")
        with torch.inference_mode():
            embeds = self.model(torch.from_numpy(feeds[CLIP_INPUT_NAME]).to(self.device))
        return {CLIP_OUTPUT_NAME: embeds.float().cpu().numpy()}
