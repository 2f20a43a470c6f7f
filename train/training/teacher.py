"""Train the CPL-VAD teacher: stage 1 -> CAR pseudo labels -> stage 2 with cross pseudo labels.

    cplvad train --config configs/train/ucf.yaml [--set key=value ...] [--data DIR] [--out DIR]
    torchrun --nproc-per-node 2 -m cplvad train --config configs/train/ucf.yaml     # DDP (gloo on CPU, nccl on GPU)

A run folder (``out``) receives: ``config.yaml`` (resolved), ``stage1.pt`` / ``teacher.pt`` (config + weights),
``pseudo_labels.npz`` (per training video, native snippet rate: ``b/<video>``, ``c/<video>``),
``pseudo_quality.json`` (precision/recall against the generator's snippet truth, when the data has it),
``scores.npz`` (test scores, the ``train.evaluation.evaluate`` layout), ``metrics.json``, ``text_embeddings.npz`` and
``plots/<video>.png`` for a few test videos. No checkpoint is picked on the test set: the last epoch is kept.

Ablations (the paper's Table 3) are config switches: ``pseudo.mode`` none | b2c | c2b | cross | self and
``pseudo.car`` true | false. ``pseudo.mode=none`` is the VadCLIP-style dual branch without pseudo labels (stage 1
only).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import Field
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from edge import car
from edge.configfile import ConfigError, StrictModel, add_config_arguments, config_from_args, dump_config, run_main
from train.data.dataset import FeatureDataset
from train.data.provenance import check_text, feature_record, resolve_text_source, write_run
from train.data.release import (DEFAULT_LEN, Split, check_dataset, feature_stats, load_ground_truth, load_split,
                                preload)
from train.training.losses import total_loss
from train.evaluation.metrics import evaluate_scores
from train.models.cplvad import CPLVAD, CPLVADConfig, VideoOutputs
from train.models.text import save_text_embeddings, text_embeddings

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- config


class DataConfig(StrictModel):
    dir: str = "data/ucf"  # a dataset folder: ours (train.csv, ...) or VadCLIP's UCF / XD lists as published
    feature_root: str | None = None  # the folder the release's feature archives were unpacked into
    dataset: Literal["ucf", "xd"] | None = None  # None: inferred from the labels
    length: int = DEFAULT_LEN  # training clip length T (long videos average-pooled, short ones padded)
    workers: int = 0  # DataLoader worker processes
    memory_mb: float = 8192  # training feature files held in memory when they total at most this (0: read per item)
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)  # training videos held out (stratified) to pick the epoch
    # by video-level AUC (video labels only; 0: keep the last epoch). The test set never picks anything.


class OptimConfig(StrictModel):
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs_stage1: int = 10
    epochs_stage2: int = 10
    lr_step: int = 4  # epochs between step decays (0: constant)
    lr_gamma: float = 0.5
    grad_clip: float = 5.0
    loss_weights: dict[str, float] = {}  # factor per loss part (bce, nce, focal_b, focal_c); missing = 1


class PseudoConfig(StrictModel):
    mode: Literal["none", "b2c", "c2b", "cross", "self"] = "cross"
    car: bool = True  # consistency-aware refinement of the pseudo labels (false: plain threshold)
    aggregation: Literal["rbf", "vote"] = "rbf"


class TrainConfig(StrictModel):
    data: DataConfig = DataConfig()
    model: CPLVADConfig = CPLVADConfig(text_source="auto")  # the teacher's architecture (train.models.cplvad)
    optim: OptimConfig = OptimConfig()
    pseudo: PseudoConfig = PseudoConfig()
    out: str = "runs/teacher"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False  # bf16 autocast for the forward pass (pays on CPUs with AMX and on GPUs)
    threads: int = 0  # torch CPU threads (0: torch's default)
    plot_videos: int = 6  # test videos plotted with both branches over the ground truth


# ----------------------------------------------------------------------------------------------- helpers


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Device and, under torchrun, the process group (nccl on GPUs, gloo on CPU)."""
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.device == "cuda" and not cuda:
        raise RuntimeError("device=cuda but no CUDA device is available")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return Runtime(device, rank, world)


def model_config(cfg: TrainConfig, split: Split) -> CPLVADConfig:
    """``cfg.model`` with the dataset's classes and ``max_len = data.length``; a different value set by hand is an
    error (a resolved config.yaml holds the same values)."""
    derived = {"class_names": split.label_map.names, "max_len": cfg.data.length}
    for key, value in derived.items():
        given = getattr(cfg.model, key)
        if key in cfg.model.model_fields_set and given != value:
            source = "the dataset's classes" if key == "class_names" else "data.length"
            raise ConfigError(f"model.{key}={given!r} differs from {source} ({value!r}); leave model.{key} out")
    return cfg.model.model_copy(update=derived)


def autocast(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
    batch["labels"] = batch.pop("multi_hot")
    return batch


# ----------------------------------------------------------------------------------------------- training


def holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(train, validation): ``fraction`` of the videos of each primary class (at least one when > 0) held out."""
    rng = np.random.default_rng(seed)
    held: set[int] = set()
    if fraction > 0:
        for label in sorted({v.primary for v in split.videos}):
            members = [i for i, v in enumerate(split.videos) if v.primary == label]
            if len(members) > 1:
                held.update(rng.permutation(members)[:max(1, round(fraction * len(members)))].tolist())
    keep = [v for i, v in enumerate(split.videos) if i not in held]
    val = [v for i, v in enumerate(split.videos) if i in held]
    return Split(keep, split.label_map, split.source), Split(val, split.label_map, split.source)


def video_auc(model: CPLVAD, split: Split, device: torch.device) -> float:
    """Video-level ROC-AUC of the B-branch (mean of the top-k snippet probabilities) on labelled videos."""
    from sklearn.metrics import roc_auc_score

    model.eval()
    text = model.text_features().detach() if model.prompts is not None else None
    labels, scores = [], []
    for video in split.videos:
        p = model.predict_video(video.load(0), text, DEFAULT_LEN).binary
        scores.append(float(np.sort(p)[-(len(p) // 16 + 1):].mean()))
        labels.append(int(video.primary != 0))
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def train_step(net: torch.nn.Module, params: list[torch.nn.Parameter], optim: torch.optim.Optimizer,
               batch: dict[str, torch.Tensor], stage: int, pseudo: dict[str, torch.Tensor] | None, mode: str,
               cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """One optimisation step on a batch (features, mask, labels); returns the loss parts."""
    with autocast(cfg, device):
        out = net(batch["features"], batch["mask"])
    loss, parts = total_loss(out, batch, stage, pseudo, mode, cfg.optim.loss_weights)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
    optim.step()
    return parts


def train_stage(stage: int, split: Split, cfg: TrainConfig, rt: Runtime, stats: tuple[np.ndarray, np.ndarray],
                pseudo: list[np.ndarray] | None = None, val: Split | None = None) -> tuple[CPLVAD, list[dict]]:
    """Train a fresh model for one stage; ``stats`` = input (mean, std) [512]; ``pseudo`` = per video [N,2]
    (pseudo_b, pseudo_c) at the native rate; ``val``: held-out training videos that pick the epoch.
    Returns the model (eval mode) and the per-epoch history."""
    torch.manual_seed(cfg.seed + stage)
    model = CPLVAD(model_config(cfg, split))
    model.set_feature_stats(torch.from_numpy(stats[0]), torch.from_numpy(stats[1]))
    model = model.to(rt.device)
    net = torch.nn.parallel.DistributedDataParallel(model) if rt.world > 1 else model
    dataset = FeatureDataset(split, cfg.data.length, targets=pseudo, seed=cfg.seed)
    sampler = DistributedSampler(dataset, rt.world, rt.rank, seed=cfg.seed) if rt.world > 1 else None
    generator = torch.Generator().manual_seed(cfg.seed + stage)
    loader = DataLoader(dataset, batch_size=cfg.optim.batch_size // rt.world, shuffle=sampler is None,
                        sampler=sampler, generator=generator, collate_fn=collate, num_workers=cfg.data.workers,
                        drop_last=len(dataset) > cfg.optim.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = (torch.optim.lr_scheduler.StepLR(optim, cfg.optim.lr_step, cfg.optim.lr_gamma)
             if cfg.optim.lr_step else None)
    epochs = cfg.optim.epochs_stage1 if stage == 1 else cfg.optim.epochs_stage2
    mode = "none" if stage == 1 else cfg.pseudo.mode
    history = []
    best: tuple[float, int, dict] | None = None
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        start, sums, count = time.perf_counter(), {}, 0
        bar = tqdm(loader, desc=f"stage {stage} epoch {epoch + 1}/{epochs}", disable=not rt.main, leave=False)
        for batch in bar:
            batch = {k: v.to(rt.device) for k, v in batch.items()}
            targets = batch.get("target")
            pseudo_b = {"b": targets[..., 0], "c": targets[..., 1]} if targets is not None else None
            parts = train_step(net, params, optim, batch, stage, pseudo_b, mode, cfg, rt.device)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.set_postfix(loss=f"{parts['total']:.3f}")
        if sched is not None:
            sched.step()
        means = {k: v / max(count, 1) for k, v in sums.items()}
        if rt.world > 1:  # the epoch's loss over every rank's batches, not rank 0's share alone
            values = torch.tensor(list(means.values()), dtype=torch.float64, device=rt.device)
            dist.all_reduce(values)
            means = dict(zip(means, (values / rt.world).tolist()))
        history.append({"epoch": epoch + 1, "seconds": time.perf_counter() - start, **means})
        if val is not None and len(val):
            history[-1]["val_video_auc"] = auc = video_auc(model, val, rt.device)
            if best is None or auc > best[0]:  # the first best epoch is kept on ties
                best = (auc, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if rt.main:
            log.info("stage %d epoch %d/%d  %s  (%.1f s)", stage, epoch + 1, epochs,
                     "  ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k not in ("epoch", "seconds")),
                     history[-1]["seconds"])
    if best is not None:
        model.load_state_dict(best[2])
        log.info("stage %d: kept epoch %d (validation video AUC %.4f)", stage, best[1], best[0])
    return model.eval(), history


# ----------------------------------------------------------------------------------------------- inference


def make_pseudo_labels(model: CPLVAD, split: Split, cfg: TrainConfig, rt: Runtime) -> dict[str, np.ndarray]:
    """CAR-refined snippet pseudo labels per training video: {name: [N, 2]} with columns (from B, from C)."""
    dataset = split.label_map.dataset
    params_b = car.CarParams.for_dataset(dataset, "binary", aggregation=cfg.pseudo.aggregation,
                                         enabled=cfg.pseudo.car)
    params_c = car.CarParams.for_dataset(dataset, "category", aggregation=cfg.pseudo.aggregation,
                                         enabled=cfg.pseudo.car)
    text = model.text_features().detach() if model.prompts is not None else None
    labels: dict[str, np.ndarray] = {}
    for video in tqdm(split.videos, desc="pseudo labels", disable=not rt.main, leave=False):
        feats = video.load(0)
        if video.primary == 0:
            labels[video.name] = np.zeros((feats.shape[0], 2), np.float32)
            continue
        out = model.predict_video(feats, text, DEFAULT_LEN, bf16=cfg.bf16)
        labels[video.name] = np.stack([car.refine(out.binary_levels, params_b),
                                       car.refine(out.class_levels, params_c)], axis=1).astype(np.float32)
    return labels


def pseudo_quality(labels: dict[str, np.ndarray], truth_path: Path) -> dict[str, dict[str, float]]:
    """Snippet precision / recall / F1 of the pseudo labels (> 0.5) on anomalous training videos."""
    with np.load(truth_path) as truth:  # the generator's snippet truth: binary/<video> [N]
        known = {k.split("/", 1)[1]: truth[k] for k in truth.files if k.startswith("binary/")}
    report = {}
    for column, branch in enumerate(("b", "c")):
        tp = fp = fn = 0
        for name, lab in labels.items():
            if name not in known or known[name].sum() == 0:
                continue
            pred, gt = lab[:, column] > 0.5, known[name][: len(lab)] > 0.5
            tp += int((pred & gt).sum())
            fp += int((pred & ~gt).sum())
            fn += int((~pred & gt).sum())
        precision = tp / max(tp + fp, 1)
        recall = tp / max(tp + fn, 1)
        report[branch] = {"precision": precision, "recall": recall,
                          "f1": 2 * precision * recall / max(precision + recall, 1e-9)}
    return report


def score_test(model: CPLVAD, data_dir: Path, cfg: TrainConfig, rt: Runtime) -> dict[str, VideoOutputs]:
    test = load_split(data_dir, "test", cfg.data.dataset, cfg.data.feature_root)
    text = model.text_features().detach() if model.prompts is not None else None
    return {video.name: model.predict_video(video.load(0), text, DEFAULT_LEN, bf16=cfg.bf16)
            for video in tqdm(test.videos, desc="test", disable=not rt.main, leave=False)}


def evaluate_branches(outputs: dict[str, VideoOutputs], data_dir: Path, feature_root: str | None,
                      dataset: str | None = None) -> dict:
    """Foundation metrics for each branch; the headline keys are the B-branch AUC/AP and the C-branch mAP."""
    truth = load_ground_truth(data_dir, feature_root=feature_root, dataset=dataset)
    classes = {k: v.classes for k, v in outputs.items()}
    by_b = evaluate_scores({k: v.binary for k, v in outputs.items()}, classes, truth)
    by_c = evaluate_scores({k: 1.0 - v.classes[:, 0] for k, v in outputs.items()}, classes, truth)
    return {**by_b, "binary_branch": {"auc": by_b["auc"], "ap": by_b["ap"]},
            "class_branch": {"auc": by_c["auc"], "ap": by_c["ap"]}}


def save_scores(outputs: dict[str, VideoOutputs], path: Path) -> None:
    arrays = {f"binary/{k}": v.binary for k, v in outputs.items()}
    arrays |= {f"classes/{k}": v.classes for k, v in outputs.items()}
    np.savez_compressed(path, **arrays)


def plot_videos(outputs: dict[str, VideoOutputs], data_dir: Path, cfg: TrainConfig, folder: Path) -> None:
    """One PNG per sample test video: both branches' scores over the ground-truth frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = load_ground_truth(data_dir, feature_root=cfg.data.feature_root, dataset=cfg.data.dataset)
    anomalous = [i for i in range(len(truth.names)) if truth.frames_of(i).any()]
    normal = [i for i in range(len(truth.names)) if not truth.frames_of(i).any()]
    picks = anomalous[: max(cfg.plot_videos - 1, 0)] + normal[:1]
    folder.mkdir(parents=True, exist_ok=True)
    for i in picks:
        name = truth.names[i]
        out = outputs[name]
        gt = truth.frames_of(i)[::16]
        t = np.arange(len(out.binary))
        fig, ax = plt.subplots(figsize=(9, 2.6))
        ax.fill_between(t, 0, gt[: len(t)], step="post", color="tab:red", alpha=0.15, label="ground truth")
        ax.plot(t, out.binary, color="tab:blue", lw=1.4, label="B-branch P_b")
        ax.plot(t, 1 - out.classes[:, 0], color="tab:orange", lw=1.2, label="C-branch 1 - P_c[normal]")
        ax.set(ylim=(-0.02, 1.02), xlabel="snippet (16 frames)", ylabel="anomaly", title=name)
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / f"{name.replace('/', '_')[:120]}.png", dpi=110)
        plt.close(fig)


# ----------------------------------------------------------------------------------------------- main


def text_provenance(cfg: TrainConfig, split: Split) -> dict:
    """Resolve ``model.text_source`` (``auto``: the features' own CLIP) in ``cfg`` and check it against the
    features' recorded encoder; returns the run's provenance record (features, text encoder)."""
    from train.models.clip_source import identity

    record = feature_record(p for v in split.videos for p in v.crops)
    where = str(split.source)
    cfg.model.text_source = resolve_text_source(cfg.model.text_source, record, where=where)
    text = identity(cfg.model.text_source, cfg.model.text_seed)
    check_text(text, record, where=where)
    if record is None:
        log.warning("the features of %s record no CLIP encoder or snippet policy (no extract.json beside them): "
                    "export cannot check that the device's CLIP and encode_every match them", where)
    return {"features": record, "text": text}




def run(cfg: TrainConfig) -> dict:
    """The whole two-stage training; returns metrics.json's content (on every rank; rank 0 writes)."""
    rt = setup_runtime(cfg)
    out = Path(cfg.out)
    data_dir = Path(cfg.data.dir)
    full = preload(load_split(data_dir, "train", cfg.data.dataset, cfg.data.feature_root), cfg.data.memory_mb)
    cfg.model = model_config(cfg, full)  # the resolved config.yaml records the classes and clip length used
    provenance = text_provenance(cfg, full)
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
        write_run(out, provenance)
    split, val = holdout(full, cfg.data.val_fraction, cfg.seed)
    log.info("%d videos held out of training to pick the epoch (video labels only)", len(val))
    log.info("%d training videos (%s), stage 1 for %d epochs, then %s pseudo labels (CAR %s) for %d epochs",
             len(split), split.label_map.dataset, cfg.optim.epochs_stage1, cfg.pseudo.mode,
             "on" if cfg.pseudo.car else "off", cfg.optim.epochs_stage2)
    started = time.perf_counter()
    stats = feature_stats(split, seed=cfg.seed)
    model, stage1 = train_stage(1, split, cfg, rt, stats, val=val)
    history = {"stage1": stage1}
    report: dict = {}
    if cfg.pseudo.mode != "none":
        if rt.main:
            torch.save(model.checkpoint(), out / "stage1.pt")
        labels = make_pseudo_labels(model, split, cfg, rt)
        if rt.main:
            np.savez_compressed(out / "pseudo_labels.npz",
                                **{f"{b}/{k}": v[:, i] for k, v in labels.items() for i, b in enumerate("bc")})
            truth_path = data_dir / "train_truth.npz"
            if truth_path.is_file():
                report["pseudo_quality"] = pseudo_quality(labels, truth_path)
                log.info("pseudo-label quality: %s", report["pseudo_quality"])
        model, history["stage2"] = train_stage(2, split, cfg, rt, stats, [labels[v.name] for v in split.videos],
                                               val=val)
    train_seconds = time.perf_counter() - started

    metrics: dict = {}
    if rt.main:
        torch.save(model.checkpoint(), out / "teacher.pt")
        if model.prompts is not None:
            save_text_embeddings(out / "text_embeddings.npz", text_embeddings(model.prompts))
        outputs = score_test(model, data_dir, cfg, rt)
        save_scores(outputs, out / "scores.npz")
        metrics = evaluate_branches(outputs, data_dir, cfg.data.feature_root, cfg.data.dataset)
        metrics |= report | {"train_seconds": train_seconds, "history": history,
                             "config": {"pseudo": cfg.pseudo.model_dump(), "seed": cfg.seed}}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if cfg.plot_videos:
            plot_videos(outputs, data_dir, cfg, out / "plots")
        log.info("teacher: AUC %.4f  AP %.4f  mAP avg %.2f (corrected %.2f)  -> %s", metrics["auc"],
                 metrics["ap"], metrics["map"]["avg"], metrics["map_corrected"]["avg"], out / "metrics.json")
    if rt.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cplvad train", description=__doc__.splitlines()[0])
    add_config_arguments(parser, TrainConfig)
    parser.add_argument("--data", type=Path, help="dataset folder (sets data.dir)")
    parser.add_argument("--out", type=Path, help="run folder to write (sets out)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(TrainConfig, args, {"data.dir": "--data", "out": "--out"})
    try:
        log.info("%s", check_dataset(cfg.data.dir, cfg.data.dataset, cfg.data.feature_root))
    except (FileNotFoundError, ValueError) as err:
        log.error("error: %s", err)
        raise SystemExit(2) from None
    run(cfg)


if __name__ == "__main__":  # an alias of `cplvad train`
    raise SystemExit(run_main(main, prog="cplvad train"))
