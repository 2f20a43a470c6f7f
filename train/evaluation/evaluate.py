"""Score a model's test-set outputs under the VadCLIP protocol (see :mod:`train.evaluation.metrics`).

    cplvad eval --scores S.npz --data DIR --out metrics.json

``S.npz`` holds ``binary/<video>`` anomaly scores [T] and, optionally, ``classes/<video>`` class
probabilities [T, M], at snippet rate, for every video of ``DIR/test.csv``. ``DIR`` is a dataset folder in
the release layout (:mod:`train.data.release`). Writes ``metrics.json`` = {"auc", "ap", "map", "map_corrected"}:
auc/ap as fractions in [0, 1], mAP in percent (null without class scores).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from edge.configfile import run_main
from train.data.release import load_ground_truth
from train.evaluation.metrics import evaluate_scores

logger = logging.getLogger(__name__)

GROUPS = ("binary", "classes")


def load_scores(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """``S.npz`` -> (binary scores per video, class scores per video or None when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file {path} not found")
    groups: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            group, sep, video = key.partition("/")
            if not sep or group not in groups or not video:
                raise ValueError(
                    f"{path}: unexpected key {key!r}; expected 'binary/<video>' or 'classes/<video>'"
                )
            groups[group][video] = npz[key]
    if not groups["binary"]:
        raise ValueError(f"{path}: no 'binary/<video>' scores")
    return groups["binary"], groups["classes"] or None


def format_table(metrics: dict) -> str:
    """A few aligned lines for the log: AUC/AP in percent, then one mAP@IoU row per variant."""
    lines = [f"AUC {100 * metrics['auc']:.2f}   AP {100 * metrics['ap']:.2f}"]
    if metrics.get("map"):
        lines.append(f"{'mAP@IoU':<16}" + "".join(f"{k:>7}" for k in metrics["map"]))
        for key, title in (("map", "all classes"), ("map_corrected", "anomaly only")):
            lines.append(f"{title:<16}" + "".join(f"{v:7.2f}" for v in metrics[key].values()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", required=True, type=Path,
                        help="npz with binary/<video> [T] and optionally classes/<video> [T,M]")
    parser.add_argument("--data", required=True, type=Path,
                        help="dataset folder: ours (test.csv, gt_*.npy) or VadCLIP's test list and ground truth")
    parser.add_argument("--out", required=True, type=Path, help="metrics.json to write")
    parser.add_argument("--feature-root", type=Path, default=None,
                        help="folder of the feature files when test.csv lists the authors' absolute paths")
    parser.add_argument("--dataset", choices=("ucf", "xd"), default=None,
                        help="which release, when the folder holds both (VadCLIP's list/ folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    started = time.perf_counter()
    try:
        truth = load_ground_truth(args.data, feature_root=args.feature_root, dataset=args.dataset)
        binary, classes = load_scores(args.scores)
        metrics = evaluate_scores(binary, classes, truth)
    except (FileNotFoundError, ValueError) as err:
        logger.error("error: %s", err)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("%s (%s, %d test videos)\n%s", args.scores, truth.label_map.dataset, len(truth.names),
                format_table(metrics))
    logger.info("wrote %s in %.1f s", args.out, time.perf_counter() - started)
    return 0


if __name__ == "__main__":  # an alias of `cplvad eval --scores FILE`
    raise SystemExit(run_main(main, prog="cplvad eval"))
