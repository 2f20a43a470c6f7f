"""DDP training (torchrun, gloo on CPU) against one process: what DDP must guarantee, step by step.

The real teacher training runs under ``tests/ddp_probe.py``, which records every optimiser step. Each step
of the 2-process run must apply the gradient ONE process computes on the whole global batch at the same
weights (every rank's share, gathered; computed in float64), the epoch losses in ``metrics.json`` must be that
batch's loss, both ranks must apply the same gradient and hold the same weights after every step, and only
rank 0 writes files. A 1-process run of the same config must take the same first step (same initial weights,
same data) and write the same files.

Why not compare the final weights: Adam divides each gradient by its own running RMS, so a parameter whose true
gradient is 0 (an attention key bias: softmax ignores a shift) moves by ~lr in the direction of its rounding
noise, and that noise depends on the CPU's summation order (AVX-512/AMX kernels differ). Gradients do not
have that problem: they are compared with a tolerance for float32 rounding, per step, at equal weights.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.test_distill import write_dataset
from train.data.release import read_split
from train.paths import PROJECT_ROOT
from train.training.teacher import holdout

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="this torch build has no torch.distributed with the gloo backend"),
]

SEED, VAL_FRACTION = 0, 0.1
# data.length 16 is below the shortest generated video (20 snippets): every clip is average-pooled and fully
# valid, so each rank's half batch has as many valid snippets as the other's and the mean of the per-rank loss
# means is the whole batch's. grad_clip=0: clipping to a norm would hide a gradient of the wrong scale (a sum
# over ranks instead of the mean has the same direction).
TINY = ("data.length=16", f"data.val_fraction={VAL_FRACTION}", "model.d_model=32", "model.num_heads=2",
        "model.num_levels=3", "model.window=4", "model.num_stem_blocks=1", "model.num_ctx=2",
        "model.text_source=tiny", "model.drop_path=0.0", "optim.lr=0.0003", "optim.epochs_stage1=2",
        "optim.epochs_stage2=1", "optim.lr_step=0", "optim.grad_clip=0", f"seed={SEED}", "device=cpu",
        "threads=1", "plot_videos=0")
STEPS = [1, 1, 2]  # the stage of each optimiser step: one batch per epoch, 2 + 1 epochs
MAIN_ONLY_LOG = "teacher: AUC"  # logged by rank 0 alone, after it wrote metrics.json
EVERY_RANK_LOG = "stage 2: kept epoch"
TIMEOUT_S = 300  # a hung process group fails the test instead of blocking the suite
# float32 gradients against the float64 gradient of the same batch and weights: the relative error of the whole
# gradient vector is ~1.5e-6 here (float32's unit roundoff is 6e-8; a forward and backward pass adds up a few
# dozen rounding steps). 1e-4 leaves room for any other summation order (AVX2, AVX-512, AMX kernels) and is far
# below what a DDP fault gives: a sum over ranks instead of the mean is off by 1.0, one rank's half batch by O(1).
GRAD_RTOL = 1e-4
# per tensor, a floor for tensors whose true gradient is 0 (attention key biases: ~1e-18 in float64): float32
# leaves rounding noise of ~1e-9 there, judged against the whole gradient's norm
GRAD_FLOOR = 1e-6
LOSS_RTOL = 1e-5  # one loss value in float32 (~1e-7 relative here)


def _train(command: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("logs/**/*.log")))
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}\n{logs}"


def _rank_stderr(log_dir: Path, rank: int) -> str:
    found = sorted(log_dir.glob(f"*/attempt_0/{rank}/stderr.log"))
    assert len(found) == 1, f"expected one stderr.log of rank {rank} under {log_dir}, found {found}"
    return found[0].read_text()


def assert_same_gradient(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], where: str) -> None:
    """``got`` (float32) is ``want`` up to float32 rounding: the whole vector within GRAD_RTOL of its norm, and
    each tensor within GRAD_RTOL of its own norm plus GRAD_FLOOR of the whole norm."""
    assert sorted(got) == sorted(want), f"{where}: gradients of {sorted(set(got) ^ set(want))} on one side only"
    scale = torch.cat([want[k].flatten().double() for k in want]).norm().item()
    error = torch.cat([(got[k].double() - want[k].double()).flatten() for k in want]).norm().item()
    assert scale > 0 and error <= GRAD_RTOL * scale, f"{where}: gradient off by {error:.3g} (norm {scale:.3g})"
    for key in want:
        diff = (got[key].double() - want[key].double()).norm().item()
        norm = want[key].double().norm().item()
        assert diff <= GRAD_RTOL * norm + GRAD_FLOOR * scale, f"{where}: {key} off by {diff:.3g} (norm {norm:.3g})"


def assert_same_loss(got: dict[str, float], want: dict[str, float], where: str) -> None:
    assert sorted(got) == sorted(want), f"{where}: loss parts {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=LOSS_RTOL), f"{where}: loss {key} {got[key]} != {value}"


def test_two_processes_take_the_steps_of_one(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", seed=SEED)
    train, _ = holdout(read_split(data / "train.csv"), VAL_FRACTION, SEED)
    settings = [arg for item in TINY for arg in ("--set", item)]
    flags = [*settings, "--set", f"optim.batch_size={len(train)}", "--data", str(data)]  # one batch per epoch
    one, two, log_dir = tmp_path / "one", tmp_path / "two", tmp_path / "logs"
    _train([sys.executable, "-m", "tests.ddp_probe", str(tmp_path / "record1"), *flags, "--out", str(one)],
           tmp_path)
    _train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "--log-dir", str(log_dir), "--redirects", "3", "-m", "tests.ddp_probe", str(tmp_path / "record2"),
            *flags, "--out", str(two)], tmp_path)
    single = torch.load(tmp_path / "record1" / "rank0.pt", weights_only=False)
    rank0, rank1 = (torch.load(tmp_path / "record2" / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert [s["stage"] for s in single] == [s["stage"] for s in rank0] == [s["stage"] for s in rank1] == STEPS
    assert [s["global_batch"] for s in single + rank0] == [len(train)] * 2 * len(STEPS)  # no sampler padding

    # every step of every run applied one process's gradient of the whole batch at the step's weights
    for run, steps in (("1 process", single), ("2 processes", rank0)):
        for i, step in enumerate(steps):
            assert_same_gradient(step["grads"], step["reference"], f"{run}, step {i + 1}")
    # the replicas stay one model: the same gradient and the same weights after every step, bit for bit
    for i, (a, b) in enumerate(zip(rank0, rank1)):
        for key in a["grads"]:
            assert torch.equal(a["grads"][key], b["grads"][key]), f"step {i + 1}: ranks apply different {key}"
        for key in a["after"]:
            assert torch.equal(a["after"][key], b["after"][key]), f"step {i + 1}: ranks hold different {key}"
    # the first step starts from the same weights on the same data in both runs: the same gradient
    assert_same_gradient(rank0[0]["grads"], single[0]["grads"], "first step, 2 processes vs 1")

    # the epoch losses (one step each) are the whole batch's, averaged over the ranks
    for run, steps in (("1 process", single), ("2 processes", rank0)):
        history = json.loads((one if run == "1 process" else two).joinpath("metrics.json").read_text())["history"]
        epochs = history["stage1"] + history["stage2"]
        assert len(epochs) == len(steps)
        for i, (epoch, step) in enumerate(zip(epochs, steps)):
            logged = {k: v for k, v in epoch.items() if k not in ("epoch", "seconds", "val_video_auc")}
            assert_same_loss(logged, step["reference_parts"], f"{run}, epoch loss {i + 1}")

    # both ranks trained to the end; rank 1 took the non-writing path; rank 0 wrote what one process writes
    err0, err1 = _rank_stderr(log_dir, 0), _rank_stderr(log_dir, 1)
    assert EVERY_RANK_LOG in err0 and EVERY_RANK_LOG in err1
    assert MAIN_ONLY_LOG in err0 and MAIN_ONLY_LOG not in err1
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    for name in ("stage1.pt", "teacher.pt"):
        a, b = (torch.load(run / name, map_location="cpu", weights_only=True) for run in (one, two))
        assert a["config"] == b["config"] and set(a["model"]) == set(b["model"]), name
        assert not any(k.startswith("module.") for k in b["model"]), f"{name} saved the DDP wrapper's names"
