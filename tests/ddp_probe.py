"""Run the teacher training (``train.training.teacher``) and record what each optimiser step did.

    python -m tests.ddp_probe RECORD_DIR [teacher arguments ...]
    torchrun --nproc-per-node 2 -m tests.ddp_probe RECORD_DIR [teacher arguments ...]

The real training runs unchanged; ``train_step`` is wrapped to observe it. After each step every process saves
the loss parts it returned, the gradient it applied (what ``p.grad`` holds after the step: averaged over the
processes by DDP, then clipped) and its parameters after the step. Rank 0 also computes the reference: the
gradient and loss parts ONE process gets on the whole global batch (every rank's share, gathered) at the weights
the step started from, in float64, clipped the same way. ``RECORD_DIR/rank<r>.pt`` holds the list of steps.
tests/test_ddp.py compares them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from train.training import teacher
from train.training.losses import total_loss


def _gather(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The global batch: every rank's share, concatenated in rank order (this rank's alone outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return batch
    shares: list[dict[str, torch.Tensor] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(shares, {k: v.cpu() for k, v in batch.items()})
    return {k: torch.cat([s[k] for s in shares if s is not None]) for k in batch}


def _reference(model: torch.nn.Module, weights: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
               stage: int, mode: str, cfg: teacher.TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """(gradients, loss parts) of one process on ``batch`` at ``weights``, in float64."""
    with torch.random.fork_rng():  # building a model draws random numbers: leave the training's stream alone
        ref = type(model)(model.config)
    ref.load_state_dict(weights)
    ref = ref.double().train()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    targets = batch.get("target")
    pseudo = {"b": targets[..., 0], "c": targets[..., 1]} if targets is not None else None
    loss, parts = total_loss(ref(batch["features"], batch["mask"]), batch, stage, pseudo, mode,
                             cfg.optim.loss_weights)
    loss.backward()
    params = [p for p in ref.parameters() if p.requires_grad]
    if cfg.optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
    grads = {n: p.grad.detach().clone() for n, p in ref.named_parameters() if p.requires_grad and p.grad is not None}
    return grads, parts


def main(record: Path, argv: list[str]) -> None:
    steps: list[dict] = []
    real_step = teacher.train_step

    def observed_step(net, params, optim, batch, stage, pseudo, mode, cfg, device):  # train_step's signature
        model = net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        parts = real_step(net, params, optim, batch, stage, pseudo, mode, cfg, device)
        step = {"stage": stage, "parts": parts,
                "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
                "after": {n: p.detach().clone() for n, p in model.named_parameters()}}
        full = _gather(batch)  # a collective: every rank takes part
        if int(os.environ.get("RANK", "0")) == 0:
            step["reference"], step["reference_parts"] = _reference(model, weights, full, stage, mode, cfg)
            step["global_batch"] = len(full["features"])
        steps.append(step)
        return parts

    teacher.train_step = observed_step
    teacher.main(argv)
    record.mkdir(parents=True, exist_ok=True)
    torch.save(steps, record / f"rank{os.environ.get('RANK', '0')}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
