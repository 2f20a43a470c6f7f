"""CPL-VAD losses: video-level MIL terms (stage 1 and 2) and the cross pseudo-label focal terms (stage 2).

Per pyramid level l, with the level's valid length n_l and k_l = n_l // 16 + 1:
  * L_bce   BCE between the mean of the top-k_l snippet anomaly probabilities and the video's anomaly label;
  * L_nce   MIL-align: per class, mean of the top-k_l logits over valid time -> video class logits ->
            softmax cross-entropy against the video label (multi-hot normalised to sum 1, for XD's multi-label
            videos);
  * focal   (alpha 0.25, gamma 2) between a branch's snippet anomaly probability and pseudo labels pooled to
            the level's rate. The C-branch's anomaly probability is 1 - P_c[normal].
The total is the sum of the terms, each averaged over the levels. Pseudo-label modes (the paper's Table 3):

    none   no pseudo labels (stage 1, and the ablation baseline)
    b2c    C-branch learns from the B-branch's pseudo labels:  focal(1 - P_c[0], pseudo_b)
    c2b    B-branch learns from the C-branch's pseudo labels:  focal(P_b, pseudo_c)
    cross  both (CPL-VAD)
    self   each branch from its own:  focal(P_b, pseudo_b) + focal(1 - P_c[0], pseudo_c)

Normal videos have known all-zero snippet labels whatever the pseudo labels say.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from train.models.cplvad import CPLVADOutput

MODES = ("none", "b2c", "c2b", "cross", "self")


def topk_count(lengths: Tensor) -> Tensor:
    """k = valid_len // 16 + 1 (the VadCLIP rule)."""
    return lengths // 16 + 1


def topk_mean(x: Tensor, mask: Tensor, k: Tensor) -> Tensor:
    """Mean of the k[b] largest valid values over time of x (B, T, ...) -> (B, ...)."""
    valid = mask.view(*mask.shape, *[1] * (x.dim() - 2))
    ranked = x.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values  # (B, T, ...)
    rank = torch.arange(x.shape[1], device=x.device).view(1, -1, *[1] * (x.dim() - 2))
    kk = k.view(-1, *[1] * (x.dim() - 1))
    taken = torch.where(rank < kk, ranked, torch.zeros_like(ranked))
    return taken.sum(dim=1) / kk.squeeze(1).to(x.dtype)


def is_anomalous(labels: Tensor) -> Tensor:
    """Video anomaly label (B,) from multi-hot class labels (B, M): not normal-only (class 0 is normal)."""
    return 1.0 - labels[:, 0]


def bce_topk_loss(binary_logits: Tensor, mask: Tensor, anomalous: Tensor) -> Tensor:
    """L_bce: BCE of the top-k mean snippet probability against the video anomaly label (B,)."""
    k = topk_count(mask.sum(1))
    video = topk_mean(torch.sigmoid(binary_logits.float()), mask, k).clamp(1e-6, 1 - 1e-6)  # (B,)
    return F.binary_cross_entropy(video, anomalous.float())


def mil_align_loss(class_logits: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
    """L_nce: top-k mean logit per class (B, M) -> softmax CE against normalised multi-hot labels (B, M)."""
    k = topk_count(mask.sum(1))
    video = topk_mean(class_logits.float(), mask, k)  # (B, M)
    target = labels / labels.sum(dim=1, keepdim=True).clamp(min=1e-6)
    return -(target * F.log_softmax(video, dim=1)).sum(dim=1).mean()


def class_anomaly_logit(class_logits: Tensor) -> Tensor:
    """Logit of 1 - softmax(class_logits)[..., 0], computed stably: logsumexp(z[1:]) - z[0]."""
    return torch.logsumexp(class_logits[..., 1:], dim=-1) - class_logits[..., 0]


def focal_loss(logits: Tensor, target: Tensor, mask: Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss averaged over valid positions; ``target`` may be soft (in [0, 1])."""
    logits, target = logits.float(), target.float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    loss = alpha_t * (1 - p_t) ** gamma * ce
    m = mask.to(loss.dtype)
    return (loss * m).sum() / m.sum().clamp(min=1.0)


def pool_to_levels(labels: Tensor, num_levels: int) -> list[Tensor]:
    """Snippet labels (B, T) -> L x (B, ceil(T / 2^l)), halved as the pyramid's skip path does (max of 3,
    stride 2).

    Labels are >= 0, so zero padding never raises a maximum.
    """
    levels = [labels]
    for _ in range(num_levels - 1):
        levels.append(F.max_pool1d(levels[-1][:, None], kernel_size=3, stride=2, padding=1)[:, 0])
    return levels


def total_loss(output: CPLVADOutput, batch: Mapping[str, Tensor], stage: int,
               pseudo: Mapping[str, Tensor] | None = None,
               mode: str = "cross", weights: Mapping[str, float] | None = None
               ) -> tuple[Tensor, dict[str, float]]:
    """The training loss and its parts (floats, for logging).

    ``batch["labels"]``: multi-hot video labels (B, M). ``pseudo``: ``{"b": (B, T), "c": (B, T)}`` snippet
    pseudo labels in [0, 1] from the stage-1 model's B- and C-branch (after CAR), at the input rate; used in
    stage 2. ``weights``: a factor per part name (bce, nce, focal_b, focal_c); missing parts weigh 1.
    """
    if stage not in (1, 2):
        raise ValueError(f"stage={stage!r}; expected 1 (video labels only) or 2 (with pseudo labels)")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {', '.join(MODES)}")
    use_pseudo = stage == 2 and mode != "none"
    if use_pseudo and (pseudo is None or not {"b", "c"} <= set(pseudo)):
        raise ValueError(f"stage 2 with mode={mode!r} needs pseudo labels {{'b': (B, T), 'c': (B, T)}}; "
                         f"got {sorted(pseudo) if pseudo is not None else None}")
    labels = batch["labels"].float()
    anomalous = is_anomalous(labels)  # (B,)
    L = len(output.masks)
    parts: dict[str, Tensor] = {}
    parts["bce"] = sum(bce_topk_loss(b, m, anomalous) for b, m in zip(output.binary_logits, output.masks)) / L
    parts["nce"] = sum(mil_align_loss(c, m, labels) for c, m in zip(output.class_logits, output.masks)) / L
    if use_pseudo:
        assert pseudo is not None
        keep = anomalous[:, None] * output.masks[0]  # normal videos and padding: 0
        levels = {key: pool_to_levels(pseudo[key].float() * keep, L) for key in ("b", "c")}
        # which pseudo labels teach each branch
        source_for_b = {"c2b": "c", "cross": "c", "self": "b"}.get(mode)
        source_for_c = {"b2c": "b", "cross": "b", "self": "c"}.get(mode)
        if source_for_b:
            parts["focal_b"] = sum(focal_loss(b, levels[source_for_b][l], m) for l, (b, m)
                                   in enumerate(zip(output.binary_logits, output.masks))) / L
        if source_for_c:
            parts["focal_c"] = sum(focal_loss(class_anomaly_logit(c), levels[source_for_c][l], m)
                                   for l, (c, m) in enumerate(zip(output.class_logits, output.masks))) / L
    weights = weights or {}
    total = sum(weights.get(name, 1.0) * value for name, value in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()} | {"total": float(total.detach())}
