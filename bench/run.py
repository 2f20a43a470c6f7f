"""The whole benchmark, one report: accuracy, speed and scale side by side (``make bench`` / ``make bench-quick``).

    cplvad bench --smoke|--quick|--full [--out bench/results/<date>] [--no-readme]

Every stage is the command a user types (``cplvad synth``, ``baseline``, ``train``, ``distill``, ``export``,
``calibrate``, ``demo``, ``bench/*.py``), run as a
child process so its wall time and peak memory (RSS, from ``wait4``) are its own. Figures are gathered into
``<out>/results.json`` (the datasets, runs and bundles go to ``--work``); :mod:`bench.report` turns that into ``report.md``, plots and a printed summary table,
and rewrites the README's results block. A stage that fails is recorded with its error and the report still
gets written.

Modes (times on 2 busy CPU cores): ``--smoke`` ~4 min (plumbing only, untrained models, a 10 s soak of 1 and 2
cameras); ``--quick`` < 20 min (UCF layout at scale 0.03, 5 + 5 teacher epochs, 40 of the test videos, tiny CLIP
end to end, one short real-size ViT-B/16 throughput measurement, a 30 s soak of 1, 2, 4 tiny-CLIP cameras);
``--full`` ~3 h (UCF and XD, all test videos, the paper's ablations, real-size CLIP end to end and its INT8
calibration, the 300 s soak of 1..16 cameras, tiny and real-size CLIP, and the calibrated bundle fp32 vs INT8).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from edge.configfile import run_main
from showcase.scenes import write_scene_video
from train.data.samples import sample_videos
from train.paths import PROJECT_ROOT

log = logging.getLogger("bench.run")

FRAMES = 16  # per snippet
# An estimate, summed from stages timed one by one on 2 cores: UCF teacher 1.8 min and UCF distillation + streaming
# evaluation 10 min (idle), real-size CLIP INT8 calibration 9.5 min and the demo 32 min (cores shared with other
# jobs); XD taken as twice UCF (not timed); the soak from its plan (300 s per camera count).
FULL_EXPECTED = ("~3 h on 2 CPU cores: soak ~1 h, teachers and ablations of both layouts ~45 min, distillation and "
                 "streaming evaluation ~30 min, real-size CLIP export, INT8 calibration and the demo ~30 min")
SCENE_FPS = 16.0  # showcase.scenes renders at 16 fps: one snippet is one second


@dataclass(frozen=True)
class Plan:
    """What one mode runs."""

    mode: str
    layouts: tuple[str, ...]
    scale: float  # fraction of the real training list generated
    teacher: tuple[str, ...]  # overrides of configs/train/<layout>.yaml
    ablations: tuple[tuple[str, tuple[str, ...]], ...]  # (row name, extra teacher overrides)
    mil: tuple[str, ...]
    distill: tuple[str, ...]
    clip_sources: tuple[str, ...]  # bench/clip_throughput.py
    clip_seconds: float
    edge_clip: str
    cameras: tuple[int, ...]
    edge_seconds: float
    int8_clip: str  # CLIP of the calibrated student bundle: the student INT8 row and the INT8 speed-ups
    calib_frames: int
    demo: bool  # alert latency through edge/run.py and MQTT
    test_videos: tuple[int, int] | None  # (anomalous, normal) test videos kept, evenly spaced; None: all
    expected_minutes: str
    soak_sources: tuple[str, ...]  # bench/soak.py: looped cameras paced in real time
    soak_cameras: tuple[int, ...]
    soak_seconds: float  # per camera count
    soak_int8: bool  # also the calibrated student bundle (int8_clip), fp32 and INT8

    @classmethod
    def make(cls, mode: str) -> Plan:
        ablations = (("CPL-VAD B->C only", ("pseudo.mode=b2c",)), ("CPL-VAD C->B only", ("pseudo.mode=c2b",)),
                     ("CPL-VAD self", ("pseudo.mode=self",)), ("CPL-VAD no CAR", ("pseudo.car=false",)))
        if mode == "smoke":
            return cls(mode, ("ucf",), 0.02, ("optim.epochs_stage1=1", "optim.epochs_stage2=1", "model.d_model=64",
                                               "plot_videos=0"),
                       (), ("epochs=1",), ("optim.epochs=1", "crops=1"), ("tiny",), 0.5, "tiny", (1, 2), 2.0,
                       "tiny", 16, False, (4, 2), "~4 min", ("tiny",), (1, 2), 10.0, False)
        if mode == "quick":
            # the last epoch: at scale 0.03 a held-out tenth (4 videos) would pick epochs by chance
            return cls(mode, ("ucf",), 0.03, ("optim.epochs_stage1=5", "optim.epochs_stage2=5", "plot_videos=0",
                                               "data.val_fraction=0"), (),
                       (), ("optim.epochs=8", "crops=2"),
                       ("tiny", "random"), 1.0, "tiny", (1, 2, 4, 8), 4.0, "tiny", 32, True, (24, 16), "< 20 min",
                       ("tiny",), (1, 2, 4), 30.0, False)
        if mode == "full":
            return cls(mode, ("ucf", "xd"), 0.1, (), ablations, (), (), ("tiny", "random"), 5.0, "random",
                       (1, 2, 4, 8), 10.0, "random", 256, True, None, FULL_EXPECTED,
                       ("tiny", "random"), (1, 2, 4, 8, 16), 300.0, True)
        raise ValueError(f"mode {mode!r}: expected smoke, quick or full")


# ----------------------------------------------------------------------------------------------- processes


@dataclass
class StepResult:
    name: str
    seconds: float
    peak_rss_mb: float
    ok: bool
    error: str | None = None


@dataclass
class Steps:
    """Runs child processes and keeps their wall time and peak RSS."""

    log_dir: Path
    done: list[StepResult] = field(default_factory=list)

    def run(self, name: str, args: list[str], env: dict[str, str] | None = None) -> StepResult:
        log.info("[%s] $ %s", name, " ".join(args))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_dir / f"{name.replace(' ', '_').replace('/', '_')}.log"
        started = time.perf_counter()
        with logfile.open("w") as out:
            proc = subprocess.Popen(args, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})})
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        peak = usage.ru_maxrss / 1024  # KiB on Linux
        ok = proc.returncode == 0
        error = None if ok else f"exit code {proc.returncode}; log: {logfile}: " + _tail(logfile)
        result = StepResult(name, round(seconds, 1), round(peak, 1), ok, error)
        self.done.append(result)
        (log.info if ok else log.error)("[%s] %s in %.0f s, peak RSS %.0f MB%s", name, "done" if ok else "FAILED",
                                        seconds, peak, "" if ok else f": {error}")
        return result


def _tail(path: Path, lines: int = 3) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def sets(*overrides: str) -> list[str]:
    """``key=value`` overrides as ``--set key=value`` arguments."""
    return [arg for override in overrides for arg in ("--set", override)]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# ----------------------------------------------------------------------------------------------- pure helpers


def accuracy_row(metrics: dict) -> dict[str, float]:
    """The four headline figures of a metrics dict (train.evaluation.metrics.evaluate_scores): AUC / AP in %, mAP in %."""
    return {"auc": 100 * metrics["auc"], "ap": 100 * metrics["ap"], "map_avg": metrics["map"]["avg"],
            "map_corrected_avg": metrics["map_corrected"]["avg"]}


def downsample_curve(x: np.ndarray, y: np.ndarray, points: int = 200) -> tuple[list[float], list[float]]:
    """At most ``points`` evenly indexed points of a curve, the ends kept."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).round().astype(int))
    return [round(float(v), 5) for v in x[idx]], [round(float(v), 5) for v in y[idx]]


def even_pick(indices: list[int], count: int) -> list[int]:
    """``count`` evenly spaced items of ``indices`` (all of them when there are fewer)."""
    if count >= len(indices):
        return list(indices)
    return [indices[int(i)] for i in np.linspace(0, len(indices) - 1, count).round()]


def subset_test(data: Path, out: Path, anomalous: int, normal: int) -> Path:
    """A view of dataset ``data`` whose test split keeps evenly spaced anomalous and normal videos (ground truth
    cut to match); the training list and the feature files are shared (symlinks)."""
    import csv

    from train.data.release import load_ground_truth, save_ground_truth

    truth = load_ground_truth(data)
    is_anomalous = [bool(truth.frames_of(i).any()) for i in range(len(truth.names))]
    keep = sorted(even_pick([i for i, a in enumerate(is_anomalous) if a], anomalous)
                  + even_pick([i for i, a in enumerate(is_anomalous) if not a], normal))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("features", "train.csv", "train_truth.npz", "dataset.json"):
        link = out / name
        if (data / name).exists() and not link.exists():
            link.symlink_to((data / name).resolve())
    with (data / "test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(truth.names):
        raise ValueError(f"{data / 'test.csv'}: {len(rows)} rows, expected one per test video ({len(truth.names)})")
    with (out / "test.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows({"path": rows[i]["path"], "label": rows[i]["label"]} for i in keep)
    save_ground_truth(out, np.concatenate([truth.frames_of(i) for i in keep]),
                      [truth.segments[i].tolist() for i in keep], [list(truth.seg_labels[i]) for i in keep])
    return out


def gemm_peak_gflops(library: str = "numpy", n: int = 2048, repeats: int = 5) -> float:
    """Practical fp32 peak of this machine: the best of ``repeats`` n x n x n matmuls (2 n^3 FLOP each) with
    ``library``'s BLAS ('numpy' or 'torch')."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    if library == "torch":
        import torch

        a, b = torch.from_numpy(a), torch.from_numpy(b)
    elif library != "numpy":
        raise ValueError(f"library {library!r}: expected numpy or torch")
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# ----------------------------------------------------------------------------------------------- stages


def curves_and_timelines(data_dir: Path, runs: dict[str, Path], videos: int = 3) -> tuple[dict, list[dict]]:
    """ROC / PR curves of each run's snippet scores (``scores.npz``) and score timelines of a few test videos."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    from train.data.release import load_ground_truth

    truth = load_ground_truth(data_dir)
    curves: dict[str, dict] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, run in runs.items():
        path = run / "scores.npz"
        if not path.is_file():
            continue
        with np.load(path) as z:
            scores[name] = {v: z[f"binary/{v}"] for v in truth.names}
        frame_scores = np.concatenate([np.repeat(scores[name][v], FRAMES)[: FRAMES * n]
                                       for v, n in zip(truth.names, truth.num_snippets)])
        fpr, tpr, _ = roc_curve(truth.gt_frames, frame_scores)
        precision, recall, _ = precision_recall_curve(truth.gt_frames, frame_scores)
        curves[name] = dict(zip(("fpr", "tpr"), downsample_curve(fpr, tpr)))
        curves[name] |= dict(zip(("recall", "precision"), downsample_curve(recall, precision)))
    anomalous = [i for i in range(len(truth.names)) if truth.frames_of(i).any()]
    timelines = []
    for i in anomalous[:videos]:
        name = truth.names[i]
        timelines.append({"video": name, "gt": truth.frames_of(i)[::FRAMES].astype(int).tolist(),
                          "scores": {row: [round(float(s), 4) for s in v[name]] for row, v in scores.items()}})
    return curves, timelines


def accuracy_stage(steps: Steps, plan: Plan, layout: str, work: Path, results: dict) -> None:
    data = work / "data" / layout
    if not (data / "dataset.json").is_file():
        steps.run(f"synth {layout}", py("-m", "cplvad", "synth", "--layout", layout, "--seed", "0", "--scale",
                                         str(plan.scale), "--out", str(data), "--force"))
    if plan.test_videos is not None:
        data = subset_test(data, work / "data" / f"{layout}-test{sum(plan.test_videos)}", *plan.test_videos)
        results.setdefault("test_subset", {})[layout] = {"anomalous": plan.test_videos[0],
                                                         "normal": plan.test_videos[1]}
    rows: dict[str, dict] = {}
    training: list[dict] = []
    runs = work / "runs"

    mil = runs / f"mil_{layout}"
    step = steps.run(f"MIL baseline {layout}", py("-m", "cplvad", "baseline", "--data", str(data), "--out", str(mil),
                                                  *sets(*plan.mil)))
    m = read_json(mil / "metrics.json")
    if m:
        rows["MIL baseline"] = accuracy_row(m)
        epochs = int(yaml.safe_load((mil / "config.yaml").read_text())["epochs"])  # the resolved config
        training.append({"stage": f"MIL baseline {layout}", "epochs": epochs, "seconds": step.seconds,
                         "seconds_per_epoch": step.seconds / epochs, "peak_rss_mb": step.peak_rss_mb})

    config = f"configs/train/{layout}.yaml"
    teachers = [("stage 1 (video labels only)", ("pseudo.mode=none",)), *plan.ablations, ("CPL-VAD teacher", ())]
    score_runs = {"MIL baseline": mil}
    for name, extra in teachers:
        out = runs / f"{layout}_{name.split(' (')[0].replace(' ', '_').replace('>', '').replace('-', '')}"
        step = steps.run(f"{name} {layout}", py("-m", "cplvad", "train", "--config", config, "--data", str(data),
                                                "--out", str(out), *sets(*plan.teacher, *extra)))
        m = read_json(out / "metrics.json")
        if not m:
            continue
        rows[name] = accuracy_row(m)
        score_runs[name] = out
        epochs = sum(len(h) for h in m.get("history", {}).values()) or None
        training.append({"stage": f"{name} {layout}", "epochs": epochs, "seconds": step.seconds,
                         "seconds_per_epoch": m["train_seconds"] / epochs if epochs else None,
                         "peak_rss_mb": step.peak_rss_mb})

    teacher, student = runs / f"{layout}_CPLVAD_teacher", runs / f"student_{layout}"
    step = steps.run(f"distill {layout}", py("-m", "cplvad", "distill", "--teacher", str(teacher), "--config",
                                             "configs/distill/default.yaml", "--out", str(student), *sets(*plan.distill)))
    m = read_json(student / "metrics.json")
    for key, name in (("student_offline", "student offline"), ("student_streaming", "student streaming")):
        if key in m:
            rows[name] = accuracy_row(m[key])
    if m.get("history"):
        epochs = len(m["history"]) if isinstance(m["history"], list) else None
        training.append({"stage": f"distill {layout}", "epochs": epochs, "seconds": step.seconds,
                         "seconds_per_epoch": m["distill_seconds"] / epochs if epochs else None,
                         "peak_rss_mb": step.peak_rss_mb})
    if "student_streaming" in m and "events" in m["student_streaming"]:
        results.setdefault("events", {})[layout] = m["student_streaming"]["events"]

    int8 = int8_stage(steps, plan, layout, data, student, work)
    if int8.get("auc_int8") is not None:  # the calibration gate's subset of test videos
        rows["student FP32 streaming (gate subset)"] = {"auc": 100 * int8["auc_float"], "ap": 100 * int8["ap_float"]}
        rows["student INT8 streaming (gate subset)"] = {"auc": 100 * int8["auc_int8"], "ap": 100 * int8["ap_int8"]}
    results.setdefault("int8", []).extend(int8.get("speed", []))
    results.setdefault("accuracy", {})[layout] = rows
    results.setdefault("training", []).extend(training)
    try:
        curves, timelines = curves_and_timelines(data, score_runs)
        results.setdefault("curves", {})[layout] = curves
        results.setdefault("timelines", {})[layout] = timelines
    except (OSError, ValueError, KeyError) as err:
        log.error("curves of %s: %s", layout, err)


def int8_stage(steps: Steps, plan: Plan, layout: str, data: Path, student: Path, work: Path) -> dict:
    """Export the student bundle, calibrate it (INT8 gate): head AUC / AP float vs INT8, INT8 speed-ups."""
    bundle = work / "bundles" / f"{layout}-{plan.int8_clip}"
    if bundle.exists():
        shutil.rmtree(bundle)
    step = steps.run(f"export {layout}", py("-m", "cplvad", "export", "--run", str(student), "--out", str(bundle),
                                            "--clip", plan.int8_clip, "--encode-every", "4"))
    if not step.ok:
        return {}
    videos = sample_videos(fetch=True)  # real footage when it can be had, else a rendered scene
    if not videos:
        work.mkdir(parents=True, exist_ok=True)
        write_scene_video(work / "scene.mp4")
        videos = [work / "scene.mp4"]
    sources = [a for v in videos[:2] for a in ("--source", str(v))]
    step = steps.run(f"calibrate {layout}", py("-m", "cplvad", "calibrate", "--bundle", str(bundle), *sources,
                                               "--data", str(data), *sets(f"frames={plan.calib_frames}",
                                               "head_windows=128", "gate_videos=16", "speed_rounds=3")))
    if not step.ok:
        return {}
    manifest = read_json(bundle / "manifest.json")
    out: dict = {"speed": []}
    for model, entry in manifest.get("models", {}).items():
        for flavour, info in ((entry.get("int8") or {}).get("flavours") or {}).items():
            gate, ms = info.get("gate", {}), info.get("ms", {})
            if model == "head" and flavour == "u8s8" and "auc_int8" in gate:
                out |= {k: gate[k] for k in ("auc_int8", "ap_int8", "auc_float", "ap_float")}
            label = "head" if model == "head" else f"{model} ({plan.int8_clip})"
            for batch, int8_ms in ms.get("int8", {}).items():
                fp32_ms = ms["fp32"][batch]
                out["speed"].append({"model": label, "flavour": flavour, "batch": int(batch), "fp32_ms": fp32_ms,
                                     "int8_ms": int8_ms, "speedup": fp32_ms / int8_ms, "passed": info.get("passed")})
    return out


def speed_stage(steps: Steps, plan: Plan, work: Path, results: dict) -> None:
    tmp = work / "speed"
    clip_json, head_json, edge_json = tmp / "clip_throughput.json", tmp / "head_latency.json", tmp / "edge_fps.json"
    steps.run("CLIP throughput", py("bench/clip_throughput.py", "--out", str(clip_json), "--sources",
                                    *plan.clip_sources, "--batches", "1", "8", "--seconds", str(plan.clip_seconds)))
    results["clip"] = read_json(clip_json).get("encoder", [])
    results["preprocess"] = read_json(clip_json).get("preprocess")
    steps.run("head latency", py("bench/head_latency.py", "--out", str(head_json), "--seconds",
                                 str(plan.clip_seconds)))
    results["head"] = read_json(head_json).get("rows", [])
    steps.run("edge fps", py("bench/edge_fps.py", "--out", str(edge_json), "--sources", plan.edge_clip,
                             "--cameras", *map(str, plan.cameras), "--seconds", str(plan.edge_seconds),
                             "--cache", str(tmp / "cache")))
    results["edge"] = read_json(edge_json).get("rows", [])


def soak_stage(steps: Steps, plan: Plan, work: Path, results: dict) -> None:
    """bench/soak.py: looped cameras paced in real time (memory slope, drops, queues, largest real-time N) per
    CLIP source at fp32; with ``plan.soak_int8`` also the calibrated student bundle at fp32 and INT8."""
    from bench.soak import int8_models

    tmp = work / "soak"
    common = ["--cameras", *map(str, plan.soak_cameras), "--seconds", str(plan.soak_seconds),
              "--cache", str(work / "speed" / "cache")]  # the bundles of the edge fps step
    runs = [("soak", ["--sources", *plan.soak_sources, "--precision", "fp32"])]
    soak: dict = {"seconds": plan.soak_seconds, "rows": [], "largest_real_time": [], "notes": []}
    if plan.soak_int8:
        bundle = work / "bundles" / f"{plan.layouts[0]}-{plan.int8_clip}"  # calibrated by int8_stage
        if (bundle / "manifest.json").is_file() and int8_models(bundle):
            runs.append(("soak int8", ["--bundle", str(bundle), "--precision", "fp32", "int8"]))
        else:
            soak["notes"].append(f"INT8 not soaked: no model of the calibrated bundle {bundle.name} passed its "
                                 "INT8 gate (or the bundle was not built)")
    for name, args in runs:
        out = tmp / f"{name.replace(' ', '_')}.json"
        steps.run(name, py("bench/soak.py", *args, *common, "--out", str(out)))
        data = read_json(out)
        soak["rows"] += data.get("rows", [])
        soak["largest_real_time"] += data.get("largest_real_time", [])
        soak |= {k: data[k] for k in ("video", "batch", "queue_size", "max_drop") if k in data}
    results["soak"] = soak


def alert_stage(steps: Steps, work: Path, results: dict, fast: bool) -> None:
    """edge/run.py on rendered scenes with known onsets, events over a local mosquitto (showcase.demo)."""
    demo = work / "demo"
    steps.run("alert latency (demo)", py("-m", "cplvad", "demo", *(["--fast"] if fast else []), "--work", str(demo)))
    summary = read_json(demo / "summary.json")
    if not summary:
        return
    alert = {k: summary.get(k) for k in ("anomalies", "hits", "misses", "false_alarms", "category_accuracy",
                                         "latency_snippets_mean", "latency_snippets_max", "events_total",
                                         "events_over_mqtt")}
    for key in ("mean", "max"):
        snippets = alert[f"latency_snippets_{key}"]
        alert[f"latency_seconds_{key}"] = None if snippets is None else snippets * FRAMES / SCENE_FPS
    live = summary.get("realtime") or {}
    alert["realtime"] = {k: live.get(k) for k in ("videos", "alerts", "latency_seconds_mean", "latency_seconds_max")}
    results["alert"] = alert


def physical_bound(results: dict) -> None:
    """Measured GEMM peak beside the CLIP ViT-B/16 FLOPs x the best measured images/s."""
    gemm = {library: round(gemm_peak_gflops(library), 1) for library in ("numpy", "torch")}
    peak = max(gemm.values())
    real = [r for r in results.get("clip", []) if r["source"] == "random"]
    best = max(real, key=lambda r: r["images_per_s"]) if real else None
    from bench.encoder_runtimes import vit_flops

    gflop = round(vit_flops() / 1e9, 2)  # ~17.5 GMAC per 224x224 image (the usually quoted "17.6 GFLOPs"), 2 FLOP each
    results["bound"] = {"gemm_gflops": peak, "gemm_by_library": gemm, "clip_gflop_per_image": gflop,
                        "best_runtime": best and f"{best['runtime']} batch {best['batch']}",
                        "best_images_per_s": best and round(best["images_per_s"], 2),
                        "achieved_gflops": best and round(best["images_per_s"] * gflop, 1),
                        "images_per_s_at_peak": round(peak / gflop, 2),
                        "fraction_of_peak": best and round(best["images_per_s"] * gflop / peak, 3)}


def machine() -> dict:
    import onnxruntime
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad bench", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    for mode in ("smoke", "quick", "full"):
        group.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    parser.add_argument("--out", type=Path, default=None, help="result folder (default bench/results/<date>-<mode>)")
    parser.add_argument("--work", type=Path, default=None,
                        help="datasets, runs and bundles (default bench/results/tmp/work-<out name>, git-ignored)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md's results block as it is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from bench.report import update_readme, write_report

    plan = Plan.make(args.mode)
    out = args.out or PROJECT_ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}-{plan.mode}"
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or PROJECT_ROOT / "bench" / "results" / "tmp" / f"work-{out.name}"
    steps = Steps(out / "logs")
    log.info("bench %s -> %s (expected %s)", plan.mode, out, plan.expected_minutes)
    started = time.perf_counter()
    results: dict = {"mode": plan.mode, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine(), "plan": {"scale": plan.scale, "teacher": plan.teacher, "mil": plan.mil,
                                                    "distill": plan.distill, "layouts": plan.layouts,
                                                    "expected_full": Plan.make("full").expected_minutes}}
    for layout in plan.layouts:
        accuracy_stage(steps, plan, layout, work, results)
    speed_stage(steps, plan, work, results)
    soak_stage(steps, plan, work, results)
    if plan.demo:
        alert_stage(steps, work, results, fast=plan.mode != "full")
    physical_bound(results)
    results["steps"] = [s.__dict__ for s in steps.done]
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = write_report(results, out)
    if not args.no_readme:
        update_readme(PROJECT_ROOT / "README.md", results, out.relative_to(PROJECT_ROOT)
                      if out.is_relative_to(PROJECT_ROOT) else out)
    print(table)
    failed = [s.name for s in steps.done if not s.ok]
    if failed:
        log.error("failed stages: %s (logs in %s)", ", ".join(failed), out / "logs")
    return 1 if failed else 0


if __name__ == "__main__":  # an alias of `cplvad bench`
    raise SystemExit(run_main(main, prog="cplvad bench"))
