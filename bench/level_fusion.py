"""How the teacher's pyramid levels score on their own and fused: AUC / AP of each level and of each fusion rule.

    cplvad bench level-fusion --run RUN --data DIR [--run RUN --data DIR ...] [--out FILE.md]

For each teacher run (``cplvad train``'s out) and the dataset it is scored on, the test videos go through
``CPLVAD.predict_video`` once; the per-level anomaly probabilities (level l repeats one value over 2^l snippets)
are then scored alone and fused: the mean of the levels' logits (``fusion: mean``, the paper's), the finest level's
(``fusion: finest``), the mean of the three finest, and a stride-weighted mean (weights 2^-l). Inference only: the
runs are not retrained, so every rule is measured on the same model. Pick a rule on one generator seed and check it
on another (``cplvad synth --seed``): the test set is for reporting, not for choosing.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench.level_fusion")
Rule = Callable[[np.ndarray], np.ndarray]  # per-level probabilities [L, N] -> score [N]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def model_fusion(p: np.ndarray, fusion: str) -> np.ndarray:
    """The teacher's own rule (``train.models.cplvad.fuse_levels``) on per-level probabilities [L, N] -> [N]."""
    import torch

    from train.models.cplvad import fuse_levels

    return _sigmoid(fuse_levels(torch.from_numpy(_logit(p))[None], fusion)[0].numpy())


def fusion_rules(levels: int) -> dict[str, Rule]:
    """The rules compared, by name: every level alone, then the fusions."""
    weights = 0.5 ** np.arange(levels)
    weights /= weights.sum()
    rules: dict[str, Rule] = {f"level {l} alone (stride {2 ** l})": (lambda l: lambda p: p[l])(l)
                              for l in range(levels)}
    rules["fusion mean (the paper's)"] = lambda p: model_fusion(p, "mean")  # level 0 alone is fusion: finest
    rules["mean of the 3 finest"] = lambda p: _sigmoid(_logit(p[:3]).mean(0))
    rules["stride-weighted mean (2^-l)"] = lambda p: _sigmoid((weights[:, None] * _logit(p)).sum(0))
    return rules


def score_run(run: Path, data: Path) -> dict[str, dict[str, float]]:
    """{rule: {auc, ap}} (in %) of one teacher run on ``data``'s test set."""
    import torch

    from train.data.release import load_ground_truth, load_split
    from train.evaluation.metrics import evaluate_scores
    from train.models.cplvad import CPLVAD

    model, text = CPLVAD.load_run(run)
    embeddings = torch.from_numpy(text.embeddings)
    truth = load_ground_truth(data)
    test = load_split(data, "test", truth.label_map.dataset)
    levels, classes = {}, {}
    for video in test.videos:
        out = model.predict_video(video.load(0), embeddings)
        levels[video.name], classes[video.name] = out.binary_levels, out.classes  # [L, N], [N, M]
    rules = fusion_rules(next(iter(levels.values())).shape[0])
    result = {}
    for name, rule in rules.items():
        m = evaluate_scores({k: rule(p) for k, p in levels.items()}, classes, truth)
        result[name] = {"auc": 100 * m["auc"], "ap": 100 * m["ap"]}
    return result


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """One column pair (AUC, AP) per run, one row per rule."""
    names = list(results)
    rules = list(next(iter(results.values())))
    lines = ["| rule | " + " | ".join(f"{n} AUC | {n} AP" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for rule in rules:
        lines.append(f"| {rule} | " + " | ".join(f"{results[n][rule]['auc']:.2f} | {results[n][rule]['ap']:.2f}"
                                                  for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad bench level-fusion", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="teacher run folder (repeatable)")
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="its dataset folder (one per --run, in the same order)")
    parser.add_argument("--name", action="append", help="column name per run (default: the run folder's name)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if len(args.run) != len(args.data) or (args.name and len(args.name) != len(args.run)):
        parser.error(f"{len(args.run)} --run, {len(args.data)} --data, {len(args.name or [])} --name: expected one "
                     "--data (and --name, if any) per --run")
    for run in args.run:
        if not (run / "teacher.pt").is_file():
            parser.error(f"--run {run}: no teacher.pt; expected the out folder of cplvad train")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    names = args.name or [run.name for run in args.run]
    results = {}
    for name, run, data in zip(names, args.run, args.data):
        log.info("scoring %s on %s", run, data)
        results[name] = score_run(run, data)
    text = markdown(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
