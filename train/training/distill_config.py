"""The distillation's config (``configs/distill/*.yaml``): read by ``cplvad distill``, and by the evaluation and
the export of a student run (its ``config.yaml``)."""
from __future__ import annotations

from typing import Literal

from edge.configfile import StrictModel
from train.models.student import StudentConfig


class DistillOptimConfig(StrictModel):
    lr: float = 5e-4  # AdamW, cosine decay to 0
    weight_decay: float = 1e-4
    batch_size: int = 64  # windows
    epochs: int = 20
    repeat: int = 1  # rounds of windows per video per epoch (small datasets: more steps per epoch)
    grad_clip: float = 5.0


class DistillLossConfig(StrictModel):
    soft_bce: float = 1.0  # BCE(student P_b per level, teacher P_b)
    kl: float = 1.0  # KL(teacher P_c || student P_c per level)
    video_bce: float = 1.0  # top-k BCE against the video label (windows whose label holds)
    mil_align: float = 1.0  # MIL-align against the video label (same windows)
    peak_fraction: float = 0.5  # share of anomalous-video windows placed over the teacher's peak snippet


class DistillConfig(StrictModel):
    teacher: str | None = None  # teacher run folder (cplvad train's out): teacher.pt, text_embeddings.npz
    data: str | None = None  # dataset folder; None: the teacher's data.dir
    feature_root: str | None = None  # None: the teacher's data.feature_root
    crops: int | None = None  # crops per training video used (None: all)
    student: StudentConfig = StudentConfig()  # the student's architecture (train.models.student)
    optim: DistillOptimConfig = DistillOptimConfig()
    loss: DistillLossConfig = DistillLossConfig()
    out: str = "runs/student"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # torch CPU threads (0: torch's default)
    workers: int = 0  # DataLoader worker processes
    evaluate: bool = True  # cplvad distill then runs the streaming evaluation (cplvad eval) on the test set
    evaluate_int8: Literal["u8s8", "s8s8"] | None = None  # and the INT8 head's streaming row (cplvad eval --int8)
