"""What scoring with fewer encoded frames per snippet costs a model trained on 16-frame means.

    python -m bench.snippet_policy --scenes DIR --work DIR [--clip tiny] [--policies 1 2 4 16] [--epochs 20]

The public VadCLIP features are means over all 16 frames of a snippet (``encode_every=1``); a device that encodes
frames 0, K, 2K, ... of each snippet pays 16/K CLIP images per snippet instead of 16. On rendered scenes
(``python -m showcase.scenes``) this script extracts the training features at ``encode_every=1`` and the held-out
features at every policy (``train.data.extract``: the device's own preprocessing and snippet code), trains the
demo teacher (``configs/train/demo.yaml``) once on the 16-frame means, and scores the held-out videos with each
policy's features. For reference it also trains the teacher on features extracted at the largest policy and scores
it at that policy (what re-extracting at the device's policy gives). Prints one table (``--out-json`` saves it):
policy, CLIP images per snippet, centred feature cosine to the 16-frame means, frame AUC / AP of both teachers.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.snippet_policy")


def extract(videos: Path, labels: Path, out: Path, clip: str, policy: int) -> Path:
    """Features of one split at one policy (cached: the extractor skips finished videos)."""
    cmd = [sys.executable, "-m", "train.data.extract", "--videos", str(videos), "--labels", str(labels), "--out",
           str(out), "--clip", clip, "--encode-every", str(policy), "--crops", "1", "--batch", "64"]
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return out


def dataset(scenes: Path, train: Path, test: Path, out: Path) -> Path:
    """A release-layout dataset with training features ``train`` and held-out features ``test``."""
    from showcase.demo import write_dataset

    if (out / "test.csv").is_file():
        return out
    links = out.parent / f"{out.name}-features"
    links.mkdir(parents=True, exist_ok=True)
    for name, target in (("train", train), ("test", test)):
        if not (links / name).exists():
            (links / name).symlink_to(target.resolve())
    write_dataset(scenes, links, out)
    return out


def train(data: Path, out: Path, epochs: int) -> Path:
    from edge.configfile import load_config
    from train.training.teacher import TrainConfig, run

    if not (out / "teacher.pt").is_file():
        cfg = load_config(TrainConfig, Path("configs/train/demo.yaml"),
                          [f"data.dir={data}", f"out={out}", f"optim.epochs_stage1={epochs}",
                           f"optim.epochs_stage2={epochs}", "plot_videos=0", "device=cpu"])
        run(cfg)
    return out


def score(run_dir: Path, data: Path) -> dict[str, float]:
    """Frame AUC / AP (B-branch) of a trained teacher on ``data``'s held-out videos."""
    import torch

    from edge.configfile import load_config
    from train.models.cplvad import CPLVAD
    from train.training.teacher import Runtime, TrainConfig, evaluate_branches, score_test

    cfg = load_config(TrainConfig, run_dir / "config.yaml")
    model = CPLVAD.from_checkpoint(torch.load(run_dir / "teacher.pt", map_location="cpu", weights_only=True)).eval()
    outputs = score_test(model, data, cfg, Runtime(torch.device("cpu")))
    metrics = evaluate_branches(outputs, data, None)
    return {"auc": float(metrics["auc"]), "ap": float(metrics["ap"])}


def cosine_to_full(full: Path, other: Path) -> float:
    """Mean cosine between a policy's snippet features and the 16-frame means over every held-out snippet, both
    centred on the mean 16-frame feature (a random encoder's common offset would make every cosine ~1)."""
    paths = sorted(full.glob("*__0.npy"))
    a = np.concatenate([np.load(p) for p in paths]).astype(np.float64)  # [N, 512]
    b = np.concatenate([np.load(other / p.name) for p in paths]).astype(np.float64)
    a, b = a - a.mean(0), b - a.mean(0)
    return float(((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snippet_policy", description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=Path, required=True, help="showcase.scenes output folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for features, datasets and runs")
    parser.add_argument("--clip", default="tiny", help="CLIP source for every extraction")
    parser.add_argument("--policies", type=int, nargs="+", default=[1, 2, 4, 16], help="encode_every values")
    parser.add_argument("--epochs", type=int, default=20, help="teacher epochs per stage")
    parser.add_argument("--no-matched", action="store_true", help="skip the teacher trained at the largest policy")
    parser.add_argument("--out-json", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scenes, work = args.scenes, args.work
    labels = scenes / "labels.csv"
    feats = {k: work / f"features_k{k}" for k in sorted(set(args.policies) | {1})}
    for k, folder in feats.items():
        extract(scenes / "test.txt", labels, folder / "test", args.clip, k)
    extract(scenes / "train.txt", labels, feats[1] / "train", args.clip, 1)
    matched = None if args.no_matched else max(args.policies)
    if matched is not None:
        extract(scenes / "train.txt", labels, feats[matched] / "train", args.clip, matched)

    full_run = train(dataset(scenes, feats[1] / "train", feats[1] / "test", work / "data_k1_k1"), work / "teacher_k1",
                     args.epochs)
    if matched is not None:
        matched_data = dataset(scenes, feats[matched] / "train", feats[matched] / "test",
                               work / f"data_k{matched}_k{matched}")
        matched_run = train(matched_data, work / f"teacher_k{matched}", args.epochs)
    rows = []
    for k in sorted(args.policies):
        data = dataset(scenes, feats[1] / "train", feats[k] / "test", work / f"data_k1_k{k}")
        row = {"encode_every": k, "images_per_snippet": len(range(0, 16, k)),
               "cosine_to_16_frame_mean": cosine_to_full(feats[1] / "test", feats[k] / "test"),
               "trained_on_16_frame_means": score(full_run, data)}
        if k == matched:
            row["trained_at_this_policy"] = score(matched_run, matched_data)
        rows.append(row)
    print(f"{'K':>3} {'images/snippet':>14} {'cosine':>7} {'AUC (16-mean model)':>20} {'AP':>6} "
          f"{'AUC (matched)':>14} {'AP':>6}")
    for r in rows:
        m = r.get("trained_at_this_policy")
        print(f"{r['encode_every']:>3} {r['images_per_snippet']:>14} {r['cosine_to_16_frame_mean']:>7.4f} "
              f"{100 * r['trained_on_16_frame_means']['auc']:>20.2f} {100 * r['trained_on_16_frame_means']['ap']:>6.2f} "
              + (f"{100 * m['auc']:>14.2f} {100 * m['ap']:>6.2f}" if m else f"{'':>14} {'':>6}"))
    if args.out_json:
        args.out_json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
