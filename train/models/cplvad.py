"""The CPL-VAD teacher: a multi-scale temporal encoder over CLIP snippet features with two branches.

    features (B, T, 512), mask (B, T)
      -> 2 masked convs (k=3) + LayerNorm + ReLU (+ sinusoidal positions if abs_position)
      -> stem: transformer blocks with local window attention                  level 0, stride 1
      -> branch: blocks that halve the length (strided depthwise q/k/v
         convs, max-pool skip); the last one attends globally                  levels 1..L-1, stride 2^l
      -> (+ a linear map of the input, max-pooled to the level, if input_skip)
      -> per-level LayerNorm                                                   F_v^l (B, T_l, d)
    B-branch: one classifier head shared by the levels (masked convs)       -> binary logits (B, T_l)
    C-branch: per-level MLP on the prompt features F_T^l (M, 512);
              cos(F_v^l, MLP_l(F_T^l)) / 0.07                               -> class logits (B, T_l, M)

Every tensor travels with its mask (True = a real snippet); padded positions are zeroed after each step and
never reach a valid output (convs see zeros, attention never looks at them, max-pool ignores them). Inputs of
any length are padded inside to a multiple of 2^(L-1) and the outputs cropped back to T_l = ceil(T / 2^l).
The config is saved with the weights (``checkpoint``) and is authoritative on load (``from_checkpoint``).
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from edge.configfile import StrictModel

from train.data.labels import UCF
from train.data.release import chunk, unchunk

if TYPE_CHECKING:
    from train.models.text import TextEmbeddings

log = logging.getLogger(__name__)

TEXT_ENCODER_PREFIX = "prompts.encoder."  # frozen CLIP weights: rebuilt from the config, not checkpointed


class CPLVADConfig(StrictModel):
    """The teacher's architecture: the ``model`` section of the training config, saved with the weights and
    authoritative on load. ``cplvad train`` sets ``class_names`` from the dataset and ``max_len`` to ``data.length``."""

    class_names: tuple[str, ...] = UCF.names  # class 0 is the normal class; M = len(class_names)
    feature_dim: int = 512  # input snippet features (CLIP ViT-B/16 projection)
    d_model: int = 512  # width of the temporal encoder
    num_heads: int = 8
    num_levels: int = 6  # pyramid levels, strides 1, 2, ..., 2^(L-1)
    window: int = 8  # local attention: keys within window // 2 on each side; the last level is global
    num_stem_blocks: int = 2
    embed_kernel: int = 3
    mlp_ratio: int = 4
    drop_path: float = 0.1  # stochastic depth on every residual branch
    max_len: int = 256  # training clip length T (a multiple of 2^(L-1)); longer inputs still work
    head_convs: int = 3  # convs in the shared binary head (the last one outputs the logit)
    prior_prob: float = 0.01  # initial anomaly probability of the binary head
    text_source: str | None = "random"  # CLIP text encoder: a Hugging Face id | a local Hugging Face CLIP folder |
    # random | tiny (random: tests only) | auto (cplvad train: the CLIP the features were extracted with, from their
    # extract.json) | None (the text embeddings are passed to forward)
    text_seed: int = 0
    text_dim: int = 512  # CLIP text projection size (F_T's width)
    num_ctx: int = 9  # learned context vectors in the prompts
    temperature: float = 0.07  # of the cosine class logits
    abs_position: bool = False  # add sinusoidal absolute positions after the embedding (ActionFormer: off)
    input_skip: bool = True  # add a linear map of the (max-pooled) input snippets to every level's features
    fusion: Literal["finest", "mean"] = "finest"  # the anomaly score: the finest level's (stride 1), or the mean of
    # every level's upsampled logits (the paper's). Coarse levels repeat one value over 2^l snippets and smear short
    # events: stage-1 teachers on both layouts x two generator seeds scored +2.1 AUC / +3.1 AP on average with the
    # finest level (one loss: UCF seed 1 AP -1.4; cplvad bench level-fusion, README)

    @model_validator(mode="after")
    def _check(self) -> CPLVADConfig:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of num_heads={self.num_heads}")
        if self.num_levels < 2:
            raise ValueError(f"num_levels={self.num_levels}: need at least 2 (a stem and a global level)")
        if len(self.class_names) < 2:
            raise ValueError(f"class_names={self.class_names}: need the normal class and an anomaly class")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def strides(self) -> list[int]:
        return [2**level for level in range(self.num_levels)]

    @classmethod
    def tiny(cls, class_names: Sequence[str] = ("normal", "fighting", "shooting", "explosion"),
             **kw: Any) -> CPLVADConfig:
        """A small config for tests: same code paths, seconds to train."""
        base = dict(class_names=tuple(class_names), d_model=32, num_heads=2, num_levels=3, window=4,
                    num_stem_blocks=1, mlp_ratio=2, max_len=32, text_source="tiny", num_ctx=2)
        return cls(**{**base, **kw})


# ----------------------------------------------------------------------------------------------------------
# Building blocks; layout (B, T, C) with a bool mask (B, T)


def sinusoid_encoding(length: int, dim: int) -> Tensor:
    """Transformer position encoding [length, dim]: sin on even channels, cos on odd ones."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def masked_max_pool(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Halve the length with a max over 3 neighbours (stride 2) that ignores padded positions."""
    x = x.masked_fill(~mask[..., None], float("-inf"))  # (B, T, C)
    y = F.max_pool1d(x.transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)  # (B, T/2, C)
    m = mask[:, ::2]
    return y.masked_fill(~m[..., None], 0.0), m


class MaskedConv1d(nn.Module):
    """Conv over time on (B, T, C) that only sees valid inputs; the mask is subsampled with the stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = True):
        super().__init__()
        assert kernel % 2 == 1, "odd kernels keep the time axis centred"
        self.stride = stride
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups,
                              bias=bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = x * mask[..., None]  # (B, T, C_in)
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T/s, C_out)
        m = mask[:, :: self.stride]
        return y * m[..., None], m


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch for whole samples while training, rescaling the survivors."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *[1] * (x.dim() - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


def window_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, radius: int | None) -> Tensor:
    """Attention of each position to the valid keys within ``radius`` (None: all keys); q, k, v (B, h, T, hs).

    A position always sees itself, so rows of padded queries stay finite (their outputs are masked later).
    Local attention gathers (2r+1)-wide key windows: memory grows with T, not T^2.
    """
    B, H, T, hs = q.shape
    if radius is None or radius >= T - 1:
        eye = torch.eye(T, dtype=torch.bool, device=q.device)
        allowed = mask[:, None, None, :] | eye  # (B, 1, T, T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    w = 2 * radius + 1
    kw = F.pad(k, (0, 0, radius, radius)).unfold(2, w, 1)  # (B, h, T, hs, w)
    vw = F.pad(v, (0, 0, radius, radius)).unfold(2, w, 1)  # (B, h, T, hs, w)
    allowed = F.pad(mask, (radius, radius)).unfold(1, w, 1).clone()  # (B, T, w)
    allowed[..., radius] = True
    att = torch.einsum("bhtc,bhtcw->bhtw", q, kw) / math.sqrt(hs)  # (B, h, T, w)
    att = att.masked_fill(~allowed[:, None], float("-inf")).softmax(dim=-1)
    return torch.einsum("bhtw,bhtcw->bhtc", att, vw)  # (B, h, T, hs)


class MaskedAttention(nn.Module):
    """Multi-head self-attention over time; q, k, v come from depthwise convs (stride 2 halves the length)."""

    def __init__(self, d: int, heads: int, stride: int, radius: int | None):
        super().__init__()
        self.heads, self.radius = heads, radius
        self.q_conv, self.k_conv, self.v_conv = (
            MaskedConv1d(d, d, 3, stride=stride, groups=d, bias=False) for _ in range(3))
        self.q_norm, self.k_norm, self.v_norm = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def split_heads(self, x: Tensor) -> Tensor:
        B, T, d = x.shape
        return x.view(B, T, self.heads, d // self.heads).transpose(1, 2)  # (B, h, T, hs)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        B = x.shape[0]
        q, m = self.q_conv(x, mask)  # (B, T', d), T' = T / stride
        k, _ = self.k_conv(x, mask)
        v, _ = self.v_conv(x, mask)
        q = self.split_heads(self.q(self.q_norm(q)))  # (B, h, T', hs)
        k = self.split_heads(self.k(self.k_norm(k)))
        v = self.split_heads(self.v(self.v_norm(v)))
        y = window_attention(q, k, v, m, self.radius)  # (B, h, T', hs)
        y = y.transpose(1, 2).reshape(B, -1, q.shape[1] * q.shape[3])  # (B, T', d)
        return self.proj(y) * m[..., None], m


class Block(nn.Module):
    """Pre-norm transformer block on masked sequences; stride 2 halves the length (max-pool skip path)."""

    def __init__(self, d: int, heads: int, stride: int, radius: int | None, mlp_ratio: int, drop_path: float):
        super().__init__()
        assert stride in (1, 2)
        self.stride = stride
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MaskedAttention(d, heads, stride, radius)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        a, m = self.attn(self.ln1(x), mask)  # (B, T', d)
        skip = masked_max_pool(x, mask)[0] if self.stride == 2 else x
        x = skip + self.drop_path(a)
        x = x + self.drop_path(self.mlp(self.ln2(x)))
        return x * m[..., None], m


class TemporalEncoder(nn.Module):
    """Features (B, T, C_in) + mask -> per-level features [(B, T_l, d)] and masks [(B, T_l)], T_l = T/2^l."""

    def __init__(self, cfg: CPLVADConfig):
        super().__init__()
        d, radius = cfg.d_model, cfg.window // 2
        self.embed = nn.ModuleList([MaskedConv1d(cfg.feature_dim if i == 0 else d, d, cfg.embed_kernel)
                                    for i in range(2)])
        self.embed_norm = nn.ModuleList([nn.LayerNorm(d) for _ in range(2)])
        self.register_buffer("pe", sinusoid_encoding(cfg.max_len, d), persistent=False)  # (max_len, d)
        self.stem = nn.ModuleList([Block(d, cfg.num_heads, 1, radius, cfg.mlp_ratio, cfg.drop_path)
                                   for _ in range(cfg.num_stem_blocks)])
        last = cfg.num_levels - 2
        self.branch = nn.ModuleList([Block(d, cfg.num_heads, 2, None if i == last else radius, cfg.mlp_ratio,
                                           cfg.drop_path) for i in range(cfg.num_levels - 1)])
        self.level_norm = nn.ModuleList([nn.LayerNorm(d) for _ in range(cfg.num_levels)])
        self.abs_position = cfg.abs_position
        self.skip = nn.Linear(cfg.feature_dim, d) if cfg.input_skip else None

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        inputs, input_mask = x, mask
        for conv, norm in zip(self.embed, self.embed_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))  # (B, T, d)
        T = x.shape[1]
        pe = self.pe[:T] if T <= self.pe.shape[0] else sinusoid_encoding(T, x.shape[2]).to(x.device)
        if self.abs_position:
            x = x + pe.to(x.dtype)
        x = x * mask[..., None]
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)  # (B, T_l, d)
            feats.append(x)
            masks.append(mask)
        if self.skip is not None:  # each level also sees its own snippets' features directly
            s, sm = self.skip(inputs), input_mask
            for level in range(len(feats)):
                if level:
                    s, sm = masked_max_pool(s, sm)
                feats[level] = feats[level] + s
        feats = [norm(f) * m[..., None] for norm, f, m in zip(self.level_norm, feats, masks)]
        return feats, masks


class BinaryHead(nn.Module):
    """Anomaly logit per snippet, shared by all levels: masked convs + LayerNorm + ReLU, last conv -> 1."""

    def __init__(self, d: int, num_convs: int, prior_prob: float):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv1d(d, d, 3) for _ in range(num_convs - 1)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(num_convs - 1)])
        self.out = MaskedConv1d(d, 1, 3)
        nn.init.constant_(self.out.conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x, _ = conv(x, mask)
            x = F.relu(norm(x))  # (B, T_l, d)
        return self.out(x, mask)[0].squeeze(-1)  # (B, T_l)


# ----------------------------------------------------------------------------------------------------------
# The model


@dataclass
class CPLVADOutput:
    """Per-level outputs, level l at stride 2^l; positions where ``masks[l]`` is False are padding."""

    binary_logits: list[Tensor]  # L x (B, T_l)
    class_logits: list[Tensor]  # L x (B, T_l, M)
    masks: list[Tensor]  # L x (B, T_l) bool


@dataclass
class CPLVADPrediction:
    """Inference outputs at the input snippet rate; zero at padded positions."""

    binary: Tensor  # (B, T) anomaly probability: sigmoid of the level-mean logit
    classes: Tensor  # (B, T, M) class probabilities: softmax of the level-mean logits
    levels: Tensor  # (B, L, T) per-level anomaly probabilities (the input of CAR)
    class_levels: Tensor  # (B, L, T) per-level C-branch anomaly probabilities 1 - P_c[normal]


@dataclass
class VideoOutputs:
    """One video's outputs at the native snippet rate (:meth:`CPLVAD.predict_video`)."""

    binary: np.ndarray  # [N] B-branch anomaly probability
    classes: np.ndarray  # [N, M] C-branch class probabilities
    binary_levels: np.ndarray  # [L, N] per-level B-branch probabilities (CAR input)
    class_levels: np.ndarray  # [L, N] per-level C-branch anomaly probabilities 1 - P_c[normal]


def fuse_levels(logits: Tensor, fusion: str) -> Tensor:
    """(B, L, T) upsampled per-level anomaly logits -> (B, T): the finest level's (``finest``) or their mean."""
    return logits[:, 0] if fusion == "finest" else logits.mean(1)


def upsample_levels(levels: Sequence[Tensor], length: int) -> Tensor:
    """Level l (B, T_l, ...) at stride 2^l -> (B, L, length, ...): values repeated 2^l times, then cropped.

    Same rule as ``edge.car.upsample_levels`` (numpy): snippet t reads level l at index t // 2^l.
    """
    return torch.stack([x.repeat_interleave(2**l, dim=1)[:, :length] for l, x in enumerate(levels)], dim=1)


class CPLVAD(nn.Module):
    """Teacher model: ``forward(features, mask, text=None) -> CPLVADOutput``; ``predict`` for inference.

    ``text`` [L, M, 512] is F_T from a cache (``train.models.text.load_text_embeddings``); without it the learned
    prompts run through the frozen CLIP text encoder (needs ``config.text_source``).
    """

    def __init__(self, config: CPLVADConfig):
        super().__init__()
        self.config = cfg = config
        # Per-channel standardisation of the input features (training-set statistics, set_feature_stats):
        # CLIP snippet features share a large common component that otherwise drowns the differences.
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))
        self.encoder = TemporalEncoder(cfg)
        self.binary_head = BinaryHead(cfg.d_model, cfg.head_convs, cfg.prior_prob)
        self.text_mlps = nn.ModuleList([
            nn.Sequential(nn.Linear(cfg.text_dim, cfg.d_model), nn.GELU(),
                          nn.Linear(cfg.d_model, cfg.d_model))
            for _ in range(cfg.num_levels)])
        self.prompts = None
        if cfg.text_source is not None:
            from train.models.text import PromptLearner  # loads transformers only when the prompts are learned here

            self.prompts = PromptLearner(cfg.class_names, cfg.num_levels, cfg.text_source, cfg.num_ctx,
                                         cfg.text_seed)
        log.info("CPL-VAD: %.2fM trainable parameters", self.num_parameters() / 1e6)

    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        """Input standardisation from training-set statistics [C] (stored with the weights)."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def text_features(self) -> Tensor:
        """F_T [L, M, 512] from the learned prompts."""
        if self.prompts is None:
            raise ValueError("this CPL-VAD has no text encoder (config.text_source=None): pass "
                             "text=[L, M, 512], e.g. from text_embeddings.npz")
        return self.prompts()

    def forward(self, features: Tensor, mask: Tensor, text: Tensor | None = None) -> CPLVADOutput:
        cfg = self.config
        B, T, _ = features.shape
        mask = mask.bool()
        pad = -T % 2 ** (cfg.num_levels - 1)
        x = (features - self.feature_mean) / self.feature_std  # (B, T, C) standardised
        x = F.pad(x, (0, 0, 0, pad))  # (B, T + pad, C)
        m = F.pad(mask, (0, pad))
        feats, masks = self.encoder(x * m[..., None], m)  # L x (B, T_l', d)
        lengths = [-(-T // s) for s in cfg.strides]  # T_l = ceil(T / 2^l): crop the inner padding
        feats = [f[:, :n] for f, n in zip(feats, lengths)]
        masks = [mk[:, :n] for mk, n in zip(masks, lengths)]

        binary = [self.binary_head(f, mk) for f, mk in zip(feats, masks)]  # L x (B, T_l)

        text = self.text_features() if text is None else text  # (L, M, E)
        if text.shape[:2] != (cfg.num_levels, cfg.num_classes):
            raise ValueError(f"text features have shape {tuple(text.shape)}; expected "
                             f"[{cfg.num_levels}, {cfg.num_classes}, {cfg.text_dim}] (levels, classes, dim)")
        classes = []
        for level, (f, mk) in enumerate(zip(feats, masks)):
            t = F.normalize(self.text_mlps[level](text[level].to(f.dtype)), dim=-1)  # (M, d)
            logits = F.normalize(f, dim=-1) @ t.T / cfg.temperature  # (B, T_l, M)
            classes.append(logits * mk[..., None])
        return CPLVADOutput(binary, classes, masks)

    @torch.no_grad()
    def predict(self, features: Tensor, mask: Tensor, text: Tensor | None = None) -> CPLVADPrediction:
        """Inference at the input rate: the anomaly score from the finest level's logit (``fusion: finest``) or the
        level-mean of upsampled logits (``mean``) -> sigmoid; classes: level-mean of logits -> softmax.

        Call ``eval()`` first (drop-path is active in training mode).
        """
        out = self(features, mask, text)
        T = features.shape[1]
        valid = mask.bool()[:, :, None]  # (B, T, 1)
        binary = upsample_levels(out.binary_logits, T).float()  # (B, L, T)
        classes = upsample_levels(out.class_logits, T).float()  # (B, L, T, M)
        return CPLVADPrediction(
            binary=torch.sigmoid(fuse_levels(binary, self.config.fusion)) * valid[..., 0],
            classes=classes.mean(1).softmax(-1) * valid,
            levels=torch.sigmoid(binary) * valid[:, None, :, 0],
            class_levels=(1 - classes.softmax(-1)[..., 0]) * valid[:, None, :, 0],
        )

    @torch.no_grad()
    def predict_video(self, features: np.ndarray, text: Tensor | None = None, chunk_len: int | None = None,
                      bf16: bool = False) -> VideoOutputs:
        """A whole video [N, 512] in consecutive chunks of ``chunk_len`` snippets (default: the training length
        ``max_len``; the test protocol) -> its outputs at the native rate. ``bf16``: autocast the forward pass."""
        device = next(self.parameters()).device
        n = features.shape[0]
        x, mask = chunk(features, chunk_len or self.config.max_len)  # (K, T, 512), (K, T)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            p = self.predict(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device), text)

        def flat(t: Tensor) -> np.ndarray:  # (K, T, ...) -> (N, ...)
            return unchunk(t.float().cpu().numpy(), n)

        return VideoOutputs(binary=flat(p.binary), classes=flat(p.classes),
                            binary_levels=flat(p.levels.transpose(1, 2)).T.copy(),  # (L, N)
                            class_levels=flat(p.class_levels.transpose(1, 2)).T.copy())

    @classmethod
    def load_run(cls, run: str | Path, device: torch.device | str = "cpu") -> tuple[CPLVAD, TextEmbeddings]:
        """A teacher run folder (``cplvad train``'s out) -> (the model in eval mode, its cached text embeddings F_T).

        The model is rebuilt without its text encoder: pass the cached F_T (``torch.from_numpy(text.embeddings)``).
        """
        from train.models.text import load_text_embeddings  # transformers only where the text is needed

        run = Path(run)
        for name in ("teacher.pt", "text_embeddings.npz"):
            if not (run / name).is_file():
                raise FileNotFoundError(f"teacher run {run}: {name} not found; expected the out folder of "
                                        "cplvad train")
        ckpt = torch.load(run / "teacher.pt", map_location="cpu", weights_only=True)
        # the learned prompts are not needed here: their output F_T is the cached text_embeddings.npz
        ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("prompts.")}
        model = cls.from_checkpoint(ckpt, text_source=None).to(device).eval()
        text = load_text_embeddings(run / "text_embeddings.npz")
        if text.classes != model.config.class_names:
            raise ValueError(f"{run / 'text_embeddings.npz'}: classes {text.classes} differ from the teacher's "
                             f"{model.config.class_names}")
        return model, text

    # --- checkpoints: the config travels with the weights; the frozen CLIP weights are rebuilt from it

    def checkpoint(self) -> dict[str, Any]:
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(TEXT_ENCODER_PREFIX)}
        return {"config": self.config.model_dump(), "model": state}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], **overrides: Any) -> CPLVAD:
        """Rebuild from ``checkpoint()``; ``overrides`` change config fields (e.g. a real ``text_source``)."""
        cfg = CPLVADConfig(**{"fusion": "mean", **ckpt["config"], **overrides})  # runs before fusion: the mean
        model = cls(cfg)
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        missing = [k for k in missing if not k.startswith(TEXT_ENCODER_PREFIX)]
        if missing or unexpected:
            raise ValueError(f"checkpoint does not match its config: missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}")
        return model
