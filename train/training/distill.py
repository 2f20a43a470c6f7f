"""Distil the CPL-VAD teacher into the causal student, on windows of W snippets at the native snippet rate.

    cplvad distill --teacher RUN [--config configs/distill/default.yaml] [--set key=value ...] [--out DIR]

Targets. The teacher (``RUN/teacher.pt``, its text cache ``RUN/text_embeddings.npz``) is run once over every
training crop at the native rate (``CPLVAD.predict_video``); its fused outputs P_b (sigmoid of the level-mean
logit, whatever ``fusion`` the teacher scores with) and P_c (softmax of the level-mean logits) are the soft
targets of EVERY student level:

  * soft BCE between each level's anomaly probability and P_b;
  * KL(P_c || each level's class probabilities);
  * the video-level losses of the teacher (``train.training.losses``: top-k BCE and MIL-align, per level), on the windows
    whose video label holds for the window: windows of normal videos, and windows of anomalous videos placed to
    contain the teacher's peak snippet (a fraction ``loss.peak_fraction`` of them; the other anomalous windows
    are sampled anywhere and get the soft targets only).

Each term has its weight in ``loss``; configs/distill/default.yaml turns the video-level ones off (they trade
the student's fidelity to the teacher for AP, measured there), configs/distill/demo.yaml keeps them.

Why the fused output and not level to level: the teacher has more levels than the student and its top level
attends globally, past and future; a causal level cannot follow it, and the teacher's single levels are noisier
than their fusion, which is what the papers evaluate. Matching every student level to the fused output gives each
level a clean full-rate target, while the per-level video losses keep the levels' own temporal scales.

Windows: an epoch cuts about one window per W snippets of each video (at least one; ``optim.repeat`` times that
for small datasets), on a random crop, with the
valid rows first and zero padding after short videos (the ring buffer's layout). The run folder (``out``) gets
``student.pt`` (config + weights), ``config.yaml`` (resolved), ``text_embeddings.npz`` (the teacher's cache cut to
the student's levels, what the bundle ships) and ``metrics.json`` (history, then the teacher / student offline /
student streaming comparison of ``train.evaluation.stream``).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from edge.configfile import add_config_arguments, config_from_args, dump_config, load_config, run_main
from train.data.provenance import feature_record, label, read_run, same_weights, write_run
from train.data.release import Split, load_split
from train.training.losses import bce_topk_loss, is_anomalous, mil_align_loss
from train.models.cplvad import CPLVAD
from train.models.student import Student, StudentOutput
from train.evaluation.stream import evaluate_run
from train.models.text import TextEmbeddings, save_text_embeddings
from train.training.distill_config import DistillConfig, DistillLossConfig
from train.training.teacher import TrainConfig

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- teacher


@dataclass
class Teacher:
    model: CPLVAD
    text: TextEmbeddings  # F_T [L_teacher, M, 512]
    config: TrainConfig  # the teacher run's resolved config
    run: Path


def load_teacher(run: str | Path, device: torch.device | str = "cpu") -> Teacher:
    """A teacher run folder -> the model (without its text encoder: the cached F_T is passed instead), its text
    embeddings and its resolved training config. The targets are the level-mean (``fusion: mean``) whatever rule
    the teacher scores with: a smooth target suits the causal student (taught the finest level's, the fast demo's
    student caught 2 of 6 held-out anomalies, against at least 4 taught the level-mean)."""
    run = Path(run)
    model, text = CPLVAD.load_run(run, device)
    model.config = model.config.model_copy(update={"fusion": "mean"})
    return Teacher(model, text, load_config(TrainConfig, run / "config.yaml"), run)


def student_provenance(teacher_run: str | Path, split: Split) -> dict:
    """The teacher run's provenance record, with the features the student learns from (they must come from the
    teacher's encoder and snippet policy when both are recorded)."""
    prov = read_run(teacher_run) or {"features": None, "text": None}
    own = feature_record(p for v in split.videos for p in v.crops)
    theirs = prov.get("features")
    if own and theirs:
        a, b = theirs.get("clip"), own.get("clip")
        if (a and b and not same_weights(a, b)) or theirs.get("encode_every") != own.get("encode_every"):
            raise ValueError(f"the teacher {teacher_run} learned from features of {label(a)} (encode_every "
                             f"{theirs.get('encode_every')}), the distillation data {split.source} holds features of "
                             f"{label(b)} (encode_every {own.get('encode_every')}); distil on the teacher's features")
    return prov | {"features": own or theirs}


def student_text(text: TextEmbeddings, levels: int) -> TextEmbeddings:
    """The teacher's F_T cut to the student's first ``levels`` levels (same strides 1, 2, 4, ...)."""
    if levels > text.embeddings.shape[0]:
        raise ValueError(f"the student has {levels} levels but the teacher's text cache has "
                         f"{text.embeddings.shape[0]}; use student.num_levels <= {text.embeddings.shape[0]}")
    return TextEmbeddings(text.classes, text.embeddings[:levels].copy(), f"{text.hash}-l{levels}", text.source)


@dataclass
class Targets:
    """The teacher's outputs on one training crop at the native rate."""

    binary: np.ndarray  # [N] P_b
    classes: np.ndarray  # [N, M] P_c

    @property
    def peak(self) -> int:
        return int(np.argmax(self.binary))


def teacher_targets(teacher: Teacher, split: Split, crops: int | None, device: torch.device
                    ) -> list[list[Targets]]:
    """Per video, per crop: the teacher's P_b and P_c (``CPLVAD.predict_video``, its test protocol)."""
    text = torch.from_numpy(teacher.text.embeddings).to(device)
    chunk = teacher.model.config.max_len
    out = []
    for video in tqdm(split.videos, desc="teacher targets", unit="video", leave=False):
        per_crop = []
        for crop in range(min(crops or len(video.crops), len(video.crops))):
            o = teacher.model.predict_video(video.load(crop), text, chunk)
            per_crop.append(Targets(o.binary.astype(np.float32), o.classes.astype(np.float32)))
        out.append(per_crop)
    return out


# ----------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowSpec:
    video: int
    crop: int
    start: int
    labelled: bool  # the video label holds for this window (normal video, or the teacher's peak inside)


def plan_windows(lengths: list[int], anomalous: list[bool], peaks: list[list[int]], window: int,
                 peak_fraction: float, rng: np.random.Generator, repeat: int = 1) -> list[WindowSpec]:
    """One epoch of windows: ``repeat`` x max(1, round(N / W)) per video, each on a random crop.

    Normal video: start uniform, labelled. Anomalous video: with probability ``peak_fraction`` the window is
    placed (uniformly) among the starts that contain the crop's peak snippet and is labelled; otherwise start
    uniform, unlabelled. Windows never start past N - W (short videos start at 0).
    """
    plan = []
    for v, (n, anomaly) in enumerate(zip(lengths, anomalous)):
        last = max(n - window, 0)
        for _ in range(repeat * max(1, round(n / window))):
            crop = int(rng.integers(len(peaks[v])))
            if anomaly and rng.random() < peak_fraction:
                peak = peaks[v][crop]
                lo, hi = max(peak - window + 1, 0), min(peak, last)
                plan.append(WindowSpec(v, crop, int(rng.integers(lo, hi + 1)), True))
            else:
                plan.append(WindowSpec(v, crop, int(rng.integers(0, last + 1)), not anomaly))
    return plan


def cut_window(x: np.ndarray, start: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start .. start + W - 1`` of x [N, ...] -> ([W, ...] zero-padded after the data, mask [W])."""
    part = x[start:start + window]
    out = np.zeros((window, *x.shape[1:]), np.float32)
    out[: len(part)] = part
    return out, np.arange(window) < len(part)


class WindowDataset(Dataset):
    """Training windows of one epoch's plan: features, mask, teacher targets, video label, ``labelled``."""

    def __init__(self, split: Split, targets: list[list[Targets]], window: int, peak_fraction: float, seed: int,
                 repeat: int = 1):
        self.split, self.targets, self.window = split, targets, window
        self.peak_fraction, self.seed, self.repeat = peak_fraction, seed, repeat
        self.lengths = [len(t[0].binary) for t in targets]
        self.anomalous = [v.primary != 0 for v in split.videos]
        self.peaks = [[t.peak for t in per_crop] for per_crop in targets]
        self.plan: list[WindowSpec] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.plan = plan_windows(self.lengths, self.anomalous, self.peaks, self.window, self.peak_fraction, rng,
                                 self.repeat)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        spec = self.plan[index]
        video = self.split.videos[spec.video]
        target = self.targets[spec.video][spec.crop]
        feats, mask = cut_window(video.load(spec.crop), spec.start, self.window)
        binary, _ = cut_window(target.binary, spec.start, self.window)
        classes, _ = cut_window(target.classes, spec.start, self.window)
        return {"features": torch.from_numpy(feats), "mask": torch.from_numpy(mask),
                "teacher_b": torch.from_numpy(binary), "teacher_c": torch.from_numpy(classes),
                "labels": torch.from_numpy(video.multi_hot), "labelled": torch.tensor(spec.labelled)}


# ----------------------------------------------------------------------------------------------- losses


def soft_bce(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """BCE of per-level logits (B, L, T) against soft targets (B, T), averaged over valid rows and levels."""
    target = target[:, None].expand_as(logits)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")  # (B, L, T)
    m = mask[:, None].expand_as(loss).float()
    return (loss * m).sum() / m.sum().clamp(min=1.0)


def class_kl(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """KL(target || softmax(logits)) of per-level logits (B, L, T, M) vs target probabilities (B, T, M),
    averaged over valid rows and levels."""
    p = target[:, None].float()  # (B, 1, T, M)
    kl = (torch.xlogy(p, p) - p * F.log_softmax(logits.float(), dim=-1)).sum(-1)  # (B, L, T)
    m = mask[:, None].expand_as(kl).float()
    return (kl * m).sum() / m.sum().clamp(min=1.0)


def distill_loss(out: StudentOutput, batch: dict[str, Tensor], weights: DistillLossConfig
                 ) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the soft-target and video-level terms, and the unweighted parts for logging."""
    mask = batch["mask"]
    parts = {"soft_bce": soft_bce(out.binary_logits, batch["teacher_b"], mask),
             "kl": class_kl(out.class_logits, batch["teacher_c"], mask)}
    keep = batch["labelled"]
    if keep.any():
        labels = batch["labels"][keep].float()
        b, c, m = out.binary_logits[keep], out.class_logits[keep], mask[keep]
        L = b.shape[1]
        parts["video_bce"] = sum(bce_topk_loss(b[:, l], m, is_anomalous(labels)) for l in range(L)) / L
        parts["mil_align"] = sum(mil_align_loss(c[:, l], m, labels) for l in range(L)) / L
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()} | {"total": float(total.detach())}


# ----------------------------------------------------------------------------------------------- training


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but no CUDA device is available")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def train_student(student: Student, dataset: WindowDataset, text: Tensor, cfg: DistillConfig,
                  device: torch.device) -> list[dict]:
    """The distillation loop; returns the per-epoch mean loss parts."""
    o = cfg.optim
    loader = DataLoader(dataset, batch_size=o.batch_size, shuffle=True, num_workers=cfg.workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    optim = torch.optim.AdamW(student.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    steps = o.epochs * max(len(loader), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 0.5 * (1 + np.cos(np.pi * min(s / steps, 1.0))))
    history = []
    for epoch in range(o.epochs):
        dataset.set_epoch(epoch)
        student.train()
        start, sums, counts = time.perf_counter(), {}, {}
        bar = tqdm(loader, desc=f"distill epoch {epoch + 1}/{o.epochs}", leave=False)
        for batch in bar:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = student.logits(batch["features"], batch["mask"], text)
            loss, parts = distill_loss(out, batch, cfg.loss)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip:
                torch.nn.utils.clip_grad_norm_(student.parameters(), o.grad_clip)
            optim.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            bar.set_postfix(loss=f"{parts['total']:.3f}")
        means = {k: sums[k] / counts[k] for k in sums}
        history.append({"epoch": epoch + 1, "seconds": time.perf_counter() - start, **means})
        log.info("distill epoch %d/%d  %s  (%.1f s)", epoch + 1, o.epochs,
                 "  ".join(f"{k} {v:.4f}" for k, v in means.items()), history[-1]["seconds"])
    return history


def run(cfg: DistillConfig) -> dict:
    """The whole distillation; returns metrics.json's content."""
    if cfg.teacher is None:
        raise ValueError("no teacher run given: pass --teacher RUN (a train.training.teacher out folder)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    teacher = load_teacher(cfg.teacher, device)
    data_dir = Path(cfg.data or teacher.config.data.dir)
    feature_root = cfg.feature_root if cfg.feature_root is not None else teacher.config.data.feature_root
    resolved = cfg.model_copy(update={"data": str(data_dir), "feature_root": feature_root})
    dump_config(resolved, out / "config.yaml")
    split = load_split(data_dir, "train", teacher.config.data.dataset, feature_root)
    if split.label_map.names != teacher.text.classes:
        raise ValueError(f"{split.source} has classes {split.label_map.names}; the teacher "
                         f"{cfg.teacher} was trained on {teacher.text.classes}")
    write_run(out, student_provenance(cfg.teacher, split))

    scfg = cfg.student
    text = student_text(teacher.text, scfg.num_levels)
    save_text_embeddings(out / "text_embeddings.npz", text)
    started = time.perf_counter()
    targets = teacher_targets(teacher, split, cfg.crops, device)
    log.info("teacher targets for %d videos x %d crops in %.1f s", len(split), len(targets[0]),
             time.perf_counter() - started)
    dataset = WindowDataset(split, targets, scfg.window, cfg.loss.peak_fraction, cfg.seed, cfg.optim.repeat)
    student = Student(scfg)
    student.set_feature_stats(teacher.model.feature_mean.cpu(), teacher.model.feature_std.cpu())
    student = student.to(device)
    log.info("student: %.2fM parameters, %d levels, window %d (receptive field %d snippets), %d windows/epoch",
             student.num_parameters() / 1e6, scfg.num_levels, scfg.window, scfg.receptive_field, len(dataset))
    history = train_student(student, dataset, torch.from_numpy(text.embeddings).to(device), resolved, device)
    ckpt = student.eval().checkpoint(teacher=str(cfg.teacher), dataset=split.label_map.dataset,
                                     classes=list(text.classes), text_hash=text.hash)
    torch.save(ckpt, out / "student.pt")
    metrics = {"distill_seconds": time.perf_counter() - started, "history": history,
               "student": {"parameters": student.num_parameters(), **scfg.model_dump()}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("wrote %s", out / "student.pt")
    return metrics


def main(argv: list[str] | None = None) -> None:
    """``cplvad distill``: distil, then (``evaluate``) the streaming evaluation of the new student run."""
    parser = argparse.ArgumentParser(prog="cplvad distill", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="teacher run folder (sets teacher)")
    parser.add_argument("--data", type=Path, help="dataset folder (sets data; default: the teacher's)")
    parser.add_argument("--out", type=Path, help="student run folder to write (sets out)")
    add_config_arguments(parser, DistillConfig)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(DistillConfig, args, {"teacher": "--teacher", "data": "--data", "out": "--out"})
    run(cfg)
    if cfg.evaluate:
        evaluate_run(cfg.out, device=pick_device(cfg.device), int8=cfg.evaluate_int8)
    log.info("next: cplvad export --run %s --out bundle/", cfg.out)


if __name__ == "__main__":  # an alias of `cplvad distill`
    raise SystemExit(run_main(main, prog="cplvad distill"))
