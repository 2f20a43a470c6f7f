"""The causal student: a small CPL-VAD that runs on the device, one window of past snippets at a time.

    features (B, W, 512), mask (B, W) valid rows first (edge.ringbuffer), text (L, M, 512)
      -> 2 causal convs (k=3, left padding) + LayerNorm + ReLU                       level 0, dilation 1
      -> level 0 blocks: causal local attention (the position and its span-1 predecessors)
      -> level l >= 1: a block that "halves the rate" (causal max-pool skip, causal depthwise q/k/v convs)
         and attends at dilation 2^l, then more blocks at that dilation
      -> per-level LayerNorm                                                          F_v^l (B, W, d)
    B-branch: causal conv head shared by the levels                                 -> binary (B, L, W)
    C-branch: per-level MLP on the given text F_T^l; cos(F_v^l, MLP_l(F_T^l)) / 0.07  -> classes (B, L, W, M)

Causal down-sampling, computed at every snippet ("algorithme a trous"). A strided pyramid (stride-2 pooling,
outputs repeated back to the input rate) is causal only if pooled element j summarises inputs <= 2j, so snippet
2j+1 reads a value that misses it, and which snippets share a pooled value depends on where the window starts.
Here level l at snippet t is what that strided pyramid would give with its grid ending at t: every op of level l
looks back at dilation 2^l instead of striding. So the newest row, the one the device reads, includes the newest
snippet at every level, and an output depends only on the snippets before it, not on the window's start (up to
the receptive field). The cost is L x W positions instead of about 2W: nothing at W = 64.

No absolute position encoding: in a sliding window an absolute position means nothing; the causal convs give
the attention its sense of order. Every output at row t depends only on rows <= t (tested), so a window that is
still filling (valid rows first, zeros after) gives at its valid rows exactly what the full stream gives.
The config is saved with the weights (``checkpoint``) and is authoritative on load (``from_checkpoint``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from edge.configfile import StrictModel

log = logging.getLogger(__name__)


class StudentConfig(StrictModel):
    """The student's architecture: the ``student`` section of the distillation config, saved with the weights and
    authoritative on load."""

    feature_dim: int = 512  # input snippet features (CLIP ViT-B/16 projection)
    d_model: int = 256
    num_heads: int = 4
    num_levels: int = 3  # level l looks back at dilation 2^l (the teacher's strides 1, 2, 4, ...): <= the teacher's levels
    window: int = 64  # W: snippets per input window (the device's ring buffer)
    attn_span: int = 8  # keys per query: the position itself and span - 1 predecessors at the level's dilation
    blocks_per_level: int = 1
    embed_kernel: int = 3
    mlp_ratio: int = 2
    head_convs: int = 2  # convs of the shared binary head (the last one outputs the logit)
    prior_prob: float = 0.01  # initial anomaly probability of the binary head
    dropout: float = 0.1
    text_dim: int = 512  # width of the text embeddings F_T
    temperature: float = 0.07  # of the cosine class logits

    @model_validator(mode="after")
    def _check(self) -> StudentConfig:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of num_heads={self.num_heads}")
        for name in ("num_levels", "window", "attn_span", "blocks_per_level", "embed_kernel", "head_convs"):
            if getattr(self, name) < 1:
                raise ValueError(f"StudentConfig.{name}={getattr(self, name)!r}; expected an integer >= 1")
        return self

    @classmethod
    def tiny(cls, **kw: Any) -> StudentConfig:
        """A small config for tests: same code paths, seconds to train."""
        return cls(**{**dict(d_model=32, num_heads=2, num_levels=3, window=16, attn_span=4, mlp_ratio=2), **kw})

    @property
    def receptive_field(self) -> int:
        """Snippets an output can depend on, itself included: a window at least this long loses nothing."""
        back = 2 * (self.embed_kernel - 1)  # the two embedding convs
        for level in range(self.num_levels):
            d = 2**level
            for i in range(self.blocks_per_level):
                conv = 2 * (d // 2 if level > 0 and i == 0 else d)  # q/k/v convs (k=3) at the input spacing
                back += conv + (self.attn_span - 1) * d  # the max-pool skip reaches no further than the convs
        back += 2 * self.head_convs * 2 ** (self.num_levels - 1)  # the head's convs on the coarsest level
        return back + 1


# ---------------------------------------------------------------------------------------------------------------
# Causal building blocks; layout (B, T, C), mask (B, T) float 0/1 with the valid rows first


def causal_pad(x: Tensor, amount: int) -> Tensor:
    """Zero rows in front of (B, T, C) -> (B, amount + T, C)."""
    return F.pad(x, (0, 0, amount, 0))


def causal_max_pool(x: Tensor, mask: Tensor, dilation: int) -> Tensor:
    """Max of x at t, t - d and t - 2d (d = ``dilation``), ignoring padded rows and the time before row 0.

    The causal, every-snippet form of a stride-2 max-pool of kernel 3 on a level of spacing d.
    """
    neg = torch.finfo(x.dtype).min
    x = torch.where(mask[..., None] > 0, x, torch.full_like(x, neg))  # (B, T, C)
    T = x.shape[1]
    padded = F.pad(x, (0, 0, 2 * dilation, 0), value=neg)  # (B, 2d + T, C)
    y = torch.maximum(torch.maximum(padded[:, :T], padded[:, dilation:dilation + T]), padded[:, 2 * dilation:])
    return y * mask[..., None]


class CausalConv1d(nn.Module):
    """Conv over time on (B, T, C) whose output at t sees inputs t, t - d, ..., t - (k-1)d only."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1, bias: bool = True):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(c_in, c_out, kernel, groups=groups, bias=bias)

    def forward(self, x: Tensor, mask: Tensor, dilation: int = 1) -> Tensor:
        x = causal_pad(x * mask[..., None], (self.kernel - 1) * dilation)  # (B, P + T, C_in)
        y = F.conv1d(x.transpose(1, 2), self.conv.weight, self.conv.bias, dilation=dilation, groups=self.conv.groups)
        return y.transpose(1, 2) * mask[..., None]  # (B, T, C_out)


def causal_band(length: int, dilation: int, span: int, device: torch.device | None = None) -> Tensor:
    """Bool [T, T]: query t may attend key s iff t - s is one of 0, d, 2d, ..., (span - 1) d."""
    t = torch.arange(length, device=device)
    lag = t[:, None] - t[None, :]  # (T, T)
    return (lag >= 0) & (lag % dilation == 0) & (lag <= (span - 1) * dilation)


class CausalAttention(nn.Module):
    """Multi-head self-attention over the past at a dilation; q, k, v from causal depthwise convs (k=3)."""

    def __init__(self, d: int, heads: int, span: int, dropout: float):
        super().__init__()
        self.heads, self.span = heads, span
        self.q_conv, self.k_conv, self.v_conv = (CausalConv1d(d, d, 3, groups=d, bias=False) for _ in range(3))
        self.q_norm, self.k_norm, self.v_norm = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        B, T, d = x.shape
        return x.view(B, T, self.heads, d // self.heads).transpose(1, 2)  # (B, h, T, hs)

    def forward(self, x: Tensor, mask: Tensor, conv_dilation: int, attn_dilation: int) -> Tensor:
        B, T, d = x.shape
        q = self.split_heads(self.q(self.q_norm(self.q_conv(x, mask, conv_dilation))))  # (B, h, T, hs)
        k = self.split_heads(self.k(self.k_norm(self.k_conv(x, mask, conv_dilation))))
        v = self.split_heads(self.v(self.v_norm(self.v_conv(x, mask, conv_dilation))))
        allowed = causal_band(T, attn_dilation, self.span, x.device)[None] & (mask[:, None, :] > 0)  # (B, T, T)
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=x.device)  # padded queries stay finite
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)  # (B, h, T, T)
        att = att.masked_fill(~allowed[:, None], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return self.drop(self.proj(y)) * mask[..., None]


class CausalBlock(nn.Module):
    """Pre-norm transformer block on a level of spacing ``dilation``; ``downsample`` halves the rate (x2 spacing)."""

    def __init__(self, d: int, heads: int, span: int, mlp_ratio: int, dropout: float, dilation: int,
                 downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.in_dilation = dilation // 2 if downsample else dilation  # spacing of the input level
        self.dilation = dilation
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalAttention(d, heads, span, dropout)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d),
                                 nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        a = self.attn(self.ln1(x), mask, self.in_dilation, self.dilation)  # (B, T, d)
        skip = causal_max_pool(x, mask, self.in_dilation) if self.downsample else x
        x = skip + a
        x = x + self.mlp(self.ln2(x))
        return x * mask[..., None]


class CausalEncoder(nn.Module):
    """Features (B, T, C_in) + mask -> per-level features [(B, T, d)], level l at dilation 2^l."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        d = cfg.d_model
        self.embed = nn.ModuleList([CausalConv1d(cfg.feature_dim if i == 0 else d, d, cfg.embed_kernel)
                                    for i in range(2)])
        self.embed_norm = nn.ModuleList([nn.LayerNorm(d) for _ in range(2)])
        self.levels = nn.ModuleList([
            nn.ModuleList([CausalBlock(d, cfg.num_heads, cfg.attn_span, cfg.mlp_ratio, cfg.dropout, 2**level,
                                       downsample=level > 0 and i == 0)
                           for i in range(cfg.blocks_per_level)])
            for level in range(cfg.num_levels)])
        self.level_norm = nn.ModuleList([nn.LayerNorm(d) for _ in range(cfg.num_levels)])

    def forward(self, x: Tensor, mask: Tensor) -> list[Tensor]:
        for conv, norm in zip(self.embed, self.embed_norm):
            x = F.relu(norm(conv(x, mask))) * mask[..., None]  # (B, T, d)
        feats = []
        for blocks, norm in zip(self.levels, self.level_norm):
            for block in blocks:
                x = block(x, mask)  # (B, T, d)
            feats.append(norm(x) * mask[..., None])
        return feats


class CausalBinaryHead(nn.Module):
    """Anomaly logit per snippet, shared by the levels: causal convs at the level's dilation + LayerNorm + ReLU."""

    def __init__(self, d: int, num_convs: int, prior_prob: float):
        super().__init__()
        self.convs = nn.ModuleList([CausalConv1d(d, d, 3) for _ in range(num_convs - 1)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(num_convs - 1)])
        self.out = CausalConv1d(d, 1, 3)
        nn.init.constant_(self.out.conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, x: Tensor, mask: Tensor, dilation: int) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask, dilation)))  # (B, T, d)
        return self.out(x, mask, dilation).squeeze(-1)  # (B, T)


# ---------------------------------------------------------------------------------------------------------------
# The model


@dataclass
class StudentOutput:
    """Per-level logits at the input rate; rows where ``mask`` is False are zero."""

    binary_logits: Tensor  # (B, L, T)
    class_logits: Tensor  # (B, L, T, M)
    mask: Tensor  # (B, T) bool


class Student(nn.Module):
    """``forward(features, mask, text) -> (binary [B,L,W], classes [B,L,W,M])`` probabilities (the ONNX boundary);
    ``logits(...)`` for training. ``text`` [L, M, 512] is an input, so the category list can change freely."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = cfg = config
        # input standardisation, the teacher's training-set statistics (set_feature_stats; saved with the weights)
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))
        self.encoder = CausalEncoder(cfg)
        self.binary_head = CausalBinaryHead(cfg.d_model, cfg.head_convs, cfg.prior_prob)
        self.text_mlps = nn.ModuleList([
            nn.Sequential(nn.Linear(cfg.text_dim, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))
            for _ in range(cfg.num_levels)])
        log.debug("student: %.2fM parameters", self.num_parameters() / 1e6)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def logits(self, features: Tensor, mask: Tensor, text: Tensor) -> StudentOutput:
        cfg = self.config
        if text.dim() != 3 or text.shape[0] != cfg.num_levels or text.shape[2] != cfg.text_dim:
            raise ValueError(f"text has shape {list(text.shape)}; expected [{cfg.num_levels}, M, {cfg.text_dim}] "
                             "(levels, classes, dim)")
        m = mask.to(features.dtype)  # (B, T)
        x = (features - self.feature_mean) / self.feature_std  # (B, T, C) standardised
        feats = self.encoder(x * m[..., None], m)  # L x (B, T, d)
        binary = torch.stack([self.binary_head(f, m, 2**level) for level, f in enumerate(feats)], dim=1)  # (B, L, T)
        classes = []
        for level, f in enumerate(feats):
            t = F.normalize(self.text_mlps[level](text[level].to(f.dtype)), dim=-1)  # (M, d)
            classes.append(F.normalize(f, dim=-1) @ t.T / cfg.temperature)  # (B, T, M)
        class_logits = torch.stack(classes, dim=1) * m[:, None, :, None]  # (B, L, T, M)
        return StudentOutput(binary * m[:, None], class_logits, mask.bool())

    def forward(self, features: Tensor, mask: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Probabilities: binary (B, L, T) sigmoid per level, classes (B, L, T, M) softmax per level; 0 at padding."""
        out = self.logits(features, mask, text)
        m = mask.to(features.dtype)
        binary = torch.sigmoid(out.binary_logits) * m[:, None]
        classes = out.class_logits.softmax(dim=-1) * m[:, None, :, None]
        return binary, classes

    # --- checkpoints: the config travels with the weights

    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        return {"config": self.config.model_dump(), "model": self.state_dict(), **extra}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Student:
        model = cls(StudentConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        return model

    @classmethod
    def load_run(cls, run: str | Path, device: torch.device | str = "cpu") -> tuple[Student, dict[str, Any]]:
        """A student run folder (``cplvad distill``'s out) -> (the model in eval mode, the checkpoint's metadata:
        teacher, dataset, classes, text_hash)."""
        path = Path(run) / "student.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; expected the out folder of cplvad distill")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = {k: v for k, v in ckpt.items() if k != "model"}
        return cls.from_checkpoint(ckpt).to(device).eval(), meta
