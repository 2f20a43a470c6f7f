"""Teacher training step time on this CPU: fp32 vs bf16 autocast (the training config's ``bf16`` switch).

    python bench/train_speed.py [--config configs/train/ucf.yaml] [--steps 20] [--warmup 3] [--threads N]
        [--out bench/results/train_speed.json] [key=value ...]

One step is what ``train.training.teacher`` does per batch in stage 2 (the full loss): forward (under
``train.training.teacher.autocast``), loss, backward, gradient clipping and an Adam step, on random features
[batch, data.length, 512] with full masks, random UCF labels (14 classes) and random pseudo labels. The model
is the config's (``configs/train/ucf.yaml``: d_model 128, T 256, batch 16, tiny text encoder). After
``--warmup`` steps of each, fp32 and bf16 steps alternate so machine load affects both alike; the medians are
reported with the torch threads, the machine's load average and whether the CPU has AMX / AVX512-BF16 (bf16
only pays where it has them).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.configfile import add_config_arguments, config_from_args, run_main  # noqa: E402
from train.data.release import Split  # noqa: E402
from train.data.labels import UCF  # noqa: E402
from train.models.cplvad import CPLVAD  # noqa: E402
from train.training.teacher import TrainConfig, model_config, train_step  # noqa: E402

log = logging.getLogger("bench.train_speed")
ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> dict[str, bool]:
    """Whether the CPU advertises AMX (tile + bf16) and AVX512-BF16 (from /proc/cpuinfo; False elsewhere)."""
    info = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if info.is_file():
        line = next((ln for ln in info.read_text().splitlines() if ln.startswith("flags")), "")
        flags = set(line.partition(":")[2].split())
    return {"amx": {"amx_tile", "amx_bf16"} <= flags, "avx512_bf16": "avx512_bf16" in flags}


def make_step(cfg: TrainConfig, seed: int = 0) -> Callable[[], float]:
    """A fresh teacher, its Adam and one random batch; the returned call runs one training step."""
    torch.manual_seed(seed)
    model = CPLVAD(model_config(cfg, Split([], UCF, Path("random")))).train()  # only its label map is read
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    B, T = cfg.optim.batch_size, cfg.data.length
    labels = torch.zeros(B, UCF.num_classes)
    labels[torch.arange(B), torch.randint(0, UCF.num_classes, (B,))] = 1.0
    batch = {"features": torch.randn(B, T, 512), "mask": torch.ones(B, T, dtype=torch.bool), "labels": labels}
    pseudo = {"b": torch.rand(B, T), "c": torch.rand(B, T)}
    device = torch.device("cpu")

    def step() -> float:
        t0 = time.perf_counter()
        train_step(model, params, optim, batch, 2, pseudo, cfg.pseudo.mode, cfg, device)
        return time.perf_counter() - t0

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/train_speed.py", description=__doc__.split("\n")[0])
    add_config_arguments(parser, TrainConfig, ROOT / "configs/train/ucf.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each precision")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each precision first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/train_speed.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps {args.steps} / --warmup {args.warmup}: need steps >= 1 and warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(TrainConfig, args)
    steps = {name: make_step(cfg.model_copy(update={"bf16": name == "bf16"})) for name in ("fp32", "bf16")}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):  # interleaved: load changes hit both precisions alike
        for name, step in steps.items():
            times[name].append(step())
    fp32_ms, bf16_ms = (1e3 * statistics.median(times[name]) for name in ("fp32", "bf16"))
    result = {
        "fp32_ms": fp32_ms, "bf16_ms": bf16_ms, "speedup": fp32_ms / bf16_ms,
        "threads": torch.get_num_threads(), **cpu_flags(),
        "steps": args.steps, "warmup": args.warmup, "load_avg_1min": os.getloadavg()[0],
        "model": {"d_model": cfg.model.d_model, "num_heads": cfg.model.num_heads,
                  "num_levels": cfg.model.num_levels, "length": cfg.data.length,
                  "batch": cfg.optim.batch_size, "classes": UCF.num_classes,
                  "text_source": cfg.model.text_source, "config": str(args.config)},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("train step (B %d, T %d, d_model %d), median of %d after %d warm-up, %d threads, load %.1f:\n"
             "  fp32 %.1f ms   bf16 %.1f ms   speedup x%.2f   (AMX %s, AVX512-BF16 %s)\nwrote %s",
             cfg.optim.batch_size, cfg.data.length, cfg.model.d_model, args.steps, args.warmup,
             result["threads"], result["load_avg_1min"], fp32_ms, bf16_ms, result["speedup"],
             "yes" if result["amx"] else "no", "yes" if result["avx512_bf16"] else "no", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, prog="python bench/train_speed.py"))
