"""DDP training (torchrun, gloo on CPU) against one process: with the same global batch, the same run.

The global batch is the whole (small) training set, so each epoch is one optimizer step on the same data
whatever order the samplers draw it in: two processes (half the batch each, gradients averaged) and one
process must end with the same weights, pseudo labels and metrics up to float rounding. Only rank 0 writes
files.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
# valid, so each rank's half batch has as many valid snippets as the other's and the per-rank loss means
# average to the whole batch's. The small lr keeps Adam's first step on gradients that are pure rounding noise
# (attention key biases, whose true gradient is 0) well inside the tolerance.
TINY = ("data.length=16", f"data.val_fraction={VAL_FRACTION}", "model.d_model=32", "model.num_heads=2",
        "model.num_levels=3", "model.window=4", "model.num_stem_blocks=1", "model.num_ctx=2",
        "model.text_source=tiny", "model.drop_path=0.0", "optim.lr=0.0003", "optim.epochs_stage1=2",
        "optim.epochs_stage2=1", "optim.lr_step=0", f"seed={SEED}", "device=cpu", "threads=1",
        "plot_videos=0")
MAIN_ONLY_LOG = "teacher: AUC"  # logged by rank 0 alone, after it wrote metrics.json
EVERY_RANK_LOG = "stage 2: kept epoch"
TIMEOUT_S = 300  # a hung process group fails the test instead of blocking the suite


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


def _assert_close(a: object, b: object, where: str = "metrics") -> None:
    """Same structure and numbers within float rounding; wall times are skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            if key not in ("seconds", "train_seconds"):
                _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) or (math.isnan(a) and math.isnan(b)), \
            f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_two_processes_match_one(shared_data: Path, tmp_path: Path) -> None:  # the tokenizer reads its BPE file
    data = write_dataset(tmp_path / "data", seed=SEED)
    train, _ = holdout(read_split(data / "train.csv"), VAL_FRACTION, SEED)
    overrides = [*TINY, f"data.dir={data}", f"optim.batch_size={len(train)}"]  # one batch per epoch
    one, two, log_dir = tmp_path / "one", tmp_path / "two", tmp_path / "logs"
    _train([sys.executable, "-m", "train.training.teacher", *overrides, f"out={one}"], tmp_path)
    _train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "--log-dir", str(log_dir), "--redirects", "3", "-m", "train.training.teacher", *overrides, f"out={two}"],
           tmp_path)

    # both ranks trained to the end; rank 1 took the non-writing path
    rank0, rank1 = _rank_stderr(log_dir, 0), _rank_stderr(log_dir, 1)
    assert EVERY_RANK_LOG in rank0 and EVERY_RANK_LOG in rank1
    assert MAIN_ONLY_LOG in rank0 and MAIN_ONLY_LOG not in rank1
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())

    for name in ("stage1.pt", "teacher.pt"):
        a, b = (torch.load(run / name, map_location="cpu", weights_only=True) for run in (one, two))
        assert a["config"] == b["config"]
        assert set(a["model"]) == set(b["model"]), name
        assert not any(k.startswith("module.") for k in b["model"]), f"{name} saved the DDP wrapper's names"
        for key, value in a["model"].items():
            torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-5, msg=f"{name}: {key}")
    with np.load(one / "pseudo_labels.npz") as a, np.load(two / "pseudo_labels.npz") as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) == 2 * len(train)
        for key in a.files:
            np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-5, err_msg=key)
    with np.load(one / "scores.npz") as a, np.load(two / "scores.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-4, err_msg=key)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
    assert [len(metrics[0]["history"][s]) for s in ("stage1", "stage2")] == [2, 1]
    _assert_close(metrics[0], metrics[1])
