"""MIL baseline: a per-snippet head trained with video labels only (top-k multiple-instance learning).

``cplvad baseline --data DIR --out RUN [--config configs/train/mil.yaml] [--set key=value ...]``

Model: a binary logit per snippet from a linear or small MLP head over its 512-d feature, and M-1
anomaly-class logits from a separate linear head (separate so that the class loss does not disturb the binary
one on small training sets); no temporal context: the reference point the temporal models must beat.
Losses per video, k = valid_len // 16 + 1 snippets:
  * binary: BCE between the mean of the top-k snippet probabilities and the video label (anomalous or not);
  * classes (anomalous videos only): top-k mean of each class logit over time, softmax cross-entropy against
    the video's anomaly classes (multi-hot normalised to sum 1).
Test scores: binary p_b = sigmoid; class probabilities [T, M] = (1 - p_b, p_b * softmax(class logits)), a
proper distribution whose normal column is the complement of the anomaly score.
Writes RUN/config.yaml (resolved), RUN/metrics.json, RUN/scores.npz (``binary/<video>`` [T],
``classes/<video>`` [T,M]) and RUN/model.pt.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from edge.configfile import StrictModel, add_config_arguments, config_from_args, dump_config, run_main
from edge.snippets import EMBED_DIM
from train.data.dataset import FeatureDataset
from train.data.release import check_dataset, load_ground_truth, load_split, preload
from train.training.losses import topk_count, topk_mean
from train.evaluation.metrics import evaluate_scores
from train.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "train" / "mil.yaml"


class MILConfig(StrictModel):
    length: int = Field(256, ge=16, description="snippets per training video (longer pooled, shorter padded)")
    head: Literal["linear", "mlp"] = Field("mlp", description="per-snippet trunk")
    hidden: int = Field(128, ge=1, description="MLP width")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout after the MLP hidden layer")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate")
    weight_decay: float = Field(1e-4, ge=0.0)
    class_weight: float = Field(1.0, ge=0.0, description="weight of the class MIL loss (0: binary only)")
    seed: int = 0
    feature_root: str | None = Field(None, description="where the listed feature files are, for lists of "
                                                       "another machine's paths (the public release)")
    dataset: Literal["ucf", "xd"] | None = Field(None, description="ucf or xd; None: inferred from the folder "
                                                                   "and the labels")
    threads: int = Field(2, ge=1, description="torch CPU threads")
    memory_mb: float = Field(8192, ge=0, description="training feature files held in memory when they total at "
                                                     "most this many MB (0: read one file per item)")


class MILHead(nn.Module):
    def __init__(self, num_classes: int, head: str = "mlp", hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        if head == "mlp":
            self.trunk: nn.Module = nn.Sequential(nn.Linear(EMBED_DIM, hidden), nn.ReLU(),
                                                  nn.Dropout(dropout))
            width = hidden
        else:
            self.trunk, width = nn.Identity(), EMBED_DIM
        self.binary = nn.Linear(width, 1)
        self.classes = nn.Linear(EMBED_DIM, num_classes - 1)  # anomaly classes 1..M-1, apart from the trunk

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, 512) -> binary logits (B, T), anomaly-class logits (B, T, M-1)."""
        h = self.trunk(x)  # (B, T, H)
        return self.binary(h).squeeze(-1), self.classes(x)

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """One video (T, 512) -> binary probabilities [T], class probabilities [T, M]."""
        logits, class_logits = self(x[None])
        p = torch.sigmoid(logits[0])  # (T,)
        classes = torch.cat([(1 - p)[:, None], p[:, None] * class_logits[0].softmax(-1)], dim=-1)  # (T, M)
        return p.numpy(), classes.numpy()


def mil_loss(logits: torch.Tensor, class_logits: torch.Tensor, mask: torch.Tensor, multi_hot: torch.Tensor,
             class_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Top-k MIL losses. logits (B, T), class_logits (B, T, M-1), mask (B, T), multi_hot (B, M)."""
    abnormal = (multi_hot[:, 1:].sum(-1) > 0).to(logits.dtype)  # (B,)
    k = topk_count(mask.sum(-1))  # (B,)
    video_p = topk_mean(torch.sigmoid(logits), mask, k).clamp(1e-6, 1 - 1e-6)  # (B,)
    bce = F.binary_cross_entropy(video_p, abnormal)
    loss, parts = bce, {"bce": bce.item()}
    if class_weight > 0 and abnormal.any():
        video_logits = topk_mean(class_logits, mask, k)[abnormal > 0]  # (A, M-1)
        target = multi_hot[abnormal > 0, 1:]
        target = target / target.sum(-1, keepdim=True)
        ce = -(target * video_logits.log_softmax(-1)).sum(-1).mean()
        loss = loss + class_weight * ce
        parts["ce"] = ce.item()
    return loss, parts


def train(data_dir: Path, cfg: MILConfig) -> MILHead:
    split = preload(load_split(data_dir, "train", cfg.dataset, cfg.feature_root), cfg.memory_mb)
    dataset = FeatureDataset(split, cfg.length, seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    model = MILHead(split.label_map.num_classes, cfg.head, cfg.hidden, cfg.dropout)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    log.info("training %s MIL head on %d videos of %s for %d epochs", cfg.head, len(split), split.source,
             cfg.epochs)
    model.train()
    for epoch in range(cfg.epochs):
        dataset.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for batch in bar:
            logits, class_logits = model(batch["features"])
            loss, parts = mil_loss(logits, class_logits, batch["mask"], batch["multi_hot"], cfg.class_weight)
            optim.zero_grad()
            loss.backward()
            optim.step()
            bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
    return model.eval()


def score_test(model: MILHead, data_dir: Path, feature_root: str | None = None, dataset: str | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    split = load_split(data_dir, "test", dataset, feature_root)
    binary, classes = {}, {}
    for video in tqdm(split.videos, desc="test", unit="video", leave=False):
        binary[video.name], classes[video.name] = model.scores(torch.from_numpy(video.load()))
    return binary, classes


def run(data_dir: str | Path, out: str | Path, cfg: MILConfig) -> dict:
    """Train, score the test split, evaluate; write the run folder and return the metrics."""
    data_dir, out = Path(data_dir), Path(out)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    model = train(data_dir, cfg)
    binary, classes = score_test(model, data_dir, cfg.feature_root, cfg.dataset)
    truth = load_ground_truth(data_dir, feature_root=cfg.feature_root, dataset=cfg.dataset)
    metrics = evaluate_scores(binary, classes, truth)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    np.savez_compressed(out / "scores.npz", **{f"binary/{k}": v for k, v in binary.items()},
                        **{f"classes/{k}": v for k, v in classes.items()})
    torch.save({"config": cfg.model_dump(), "state_dict": model.state_dict()}, out / "model.pt")
    log.info("AUC %.4f  AP %.4f  mAP avg %.2f (corrected %.2f)  in %.1f s -> %s", metrics["auc"],
             metrics["ap"], metrics["map"]["avg"], metrics["map_corrected"]["avg"],
             time.perf_counter() - t0, out)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cplvad baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder: ours (train.csv, test.csv, gt_*.npy) or "
                                                      "VadCLIP's UCF / XD lists and ground truth as published")
    parser.add_argument("--out", required=True, help="run folder to write")
    add_config_arguments(parser, MILConfig, DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(MILConfig, args)
    try:
        log.info("%s", check_dataset(args.data, cfg.dataset, cfg.feature_root))
    except (FileNotFoundError, ValueError) as err:
        log.error("error: %s", err)
        raise SystemExit(2) from None
    run(args.data, args.out, cfg)


if __name__ == "__main__":  # an alias of `cplvad baseline`
    raise SystemExit(run_main(main, prog="cplvad baseline"))
