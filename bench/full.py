"""The full accuracy report: the paper's Table 3 rows and the MIL baseline, both layouts, several seeds, mean +- std.

    PYTHONPATH=. python3 -m bench.full --profile gpu|cpu|tiny [--out bench/results/full[_X]] [--work DIR]
        [--parallel N] [--cap S] [--wall S] [--seeds 0 1 2] [--rows mil stage1 ...] [--layouts ucf xd] [--scale F]
        [--scale-xd F] [--regime default|context] [--set KEY=VALUE ...] [--student-set KEY=VALUE ...]
    PYTHONPATH=. python3 -m bench.full --merge A/results.json B/results.json --out bench/results/full

Generates both layouts' benchmark (``cplvad synth``, generator seed 0, or ``--regime``'s, ``--workers``), then runs every (row,
layout, seed) as its own child process (``python -m cplvad train|baseline``), ``--parallel`` at a time, each
under a time cap (``--cap`` seconds; and none starts or runs past ``--wall`` seconds from the start). A run that
hits a cap is recorded as ``capped``, one that fails as ``failed``, one never started as ``not run``: nothing is
dropped. Runs are ordered seed first, so a wall cap leaves whole seeds. The report (``results.json``,
``report.md``, ``accuracy.png``) gives mean +- std (sample std, ddof 1) over the seeds that finished, per row and
layout, with the hardware (CPU model, GPU name), the commit and the wall time. ``--merge`` makes one report of
several runs' results.json (say, seed 0 on one GPU session and seeds 1 and 2, ``--seeds 1 2``, on the next).

Rows: ``mil`` (train.training.baseline, configs/train/mil.yaml), and the teacher (configs/train/<layout>[_full].yaml)
with ``stage1`` (pseudo.mode=none), ``b2c``, ``c2b``, ``self``, ``nocar`` (cross, pseudo.car=false), ``cross``
(CPL-VAD). Each teacher row runs whole (stage 1 is not shared between rows). ``student``: ``cplvad distill``
(configs/distill/default.yaml) from the ``cross`` run of the same layout and seed (it starts once that run is
done), which reports three rows: the student offline, streaming (the device's loop and smoother, with false
alarms per hour of normal video, with and without the warm-up, and the alert latency) and INT8 streaming (the
same loop on the head quantized as ``cplvad calibrate`` does it, ONNX Runtime u8s8).

Profiles:
  gpu   scale 1.0 (the whole training list), the paper's sizes (configs/train/{ucf,xd}_full.yaml: d=512, 8 heads,
        Adam 1e-4, batch 32, 10 + 10 epochs, bf16), seeds 0 1 2, 8 runs at a time with 2 CPU threads each, a cap
        of 420 s per run and 510 s in all (one H200, 16 cores; the rows not reached are listed as such); the
        student on crop 0, without the INT8 row (ONNX Runtime on two CPU threads would not fit the cap)
  cpu   scale 0.25 of UCF's list (402 training videos) and 0.1 of XD's (395), the CPU configs
        (configs/train/{ucf,xd}.yaml: d=128, 8 + 8 epochs), seeds 0 1 2, two runs at a time with one thread each,
        a cap of 1800 s per run; the student distilled on crop 0 for 6 epochs, with the INT8 row (48 runs; a
        student run takes about 30 min, most of it the streaming evaluation: one 64-snippet window per snippet)
  tiny  the plumbing: UCF at scale 0.02, seed 0, MIL and stage 1, 1 + 1 epochs of a d=32 teacher (a few minutes)

The device command (one H200; the wheels from ``bench/device_wheels.sh`` in ``.whl``, carried; results under
$OUT/full, copied to bench/results/full and committed)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
.whl/*.whl && export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 CPLVAD_COMMIT=$(cat .whl/COMMIT) || exit; \
timeout -k 10 560 python3 -m bench.full --profile gpu --out $OUT/full --work /tmp/cplvad-full
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from train.data.synth import REGIMES
from train.paths import PROJECT_ROOT

log = logging.getLogger("bench.full")

ROWS: dict[str, tuple[str, tuple[str, ...]]] = {  # key: (name in the report, teacher overrides); mil: the baseline
    "mil": ("MIL baseline", ()),
    "stage1": ("stage 1 (video labels only)", ("pseudo.mode=none",)),
    "b2c": ("CPL-VAD B->C only", ("pseudo.mode=b2c",)),
    "c2b": ("CPL-VAD C->B only", ("pseudo.mode=c2b",)),
    "self": ("CPL-VAD self", ("pseudo.mode=self",)),
    "nocar": ("CPL-VAD cross, no CAR", ("pseudo.car=false",)),
    "cross": ("CPL-VAD (cross, CAR)", ()),
    "student_teacher": ("CPL-VAD teacher of the student (its cross run)", ()),
    "student": ("student offline (distilled from CPL-VAD)", ()),
    "student_stream": ("student streaming (the device's loop)", ()),
    "student_int8": ("student INT8 streaming (ONNX Runtime u8s8)", ()),
}
DEPENDS = {"student": "cross"}  # a row distilled from another row's run of the same layout and seed
DERIVED = {"student_teacher": "student", "student_stream": "student", "student_int8": "student"}  # rows measured
# by another row's job (the student's evaluation scores its teacher on the same test set)
METRICS = ("auc", "ap", "map_avg", "map_corrected_avg")
ALERT_METRICS = ("false_alarms_per_hour", "false_alarms_per_hour_no_warmup", "latency_s_median", "alerted_percent")
STATUSES = ("ok", "capped", "failed", "not run")


@dataclass(frozen=True)
class Plan:
    """What one report runs."""

    profile: str
    scale: float  # of each layout's training list (cplvad synth --scale)
    layouts: tuple[str, ...]
    seeds: tuple[int, ...]
    rows: tuple[str, ...]
    config_suffix: str  # configs/train/<layout><suffix>.yaml
    teacher: tuple[str, ...] = ()  # extra overrides of every teacher row
    mil: tuple[str, ...] = ()  # extra overrides of the MIL baseline
    student: tuple[str, ...] = ()  # extra overrides of the distillation (configs/distill/default.yaml)
    parallel: int = 1
    threads: int = 2  # torch / BLAS threads per run
    cap: float = 3600.0  # seconds per run
    wall: float | None = None  # seconds in all (None: no limit)
    synth_workers: int = 1  # per layout
    scale_xd: float | None = None  # XD's scale where it differs (its list is 2.5x UCF's)
    regime: str = "default"  # the generator's regime (train.data.synth.REGIMES: knobs and a generator seed)

    def scale_of(self, layout: str) -> float:
        return self.scale_xd if layout == "xd" and self.scale_xd is not None else self.scale

    @classmethod
    def make(cls, profile: str) -> Plan:
        rows = tuple(ROWS)
        if profile == "gpu":
            return cls(profile, 1.0, ("ucf", "xd"), (0, 1, 2), rows, "_full", ("plot_videos=0", "data.memory_mb=16384"),
                       ("memory_mb=16384",), parallel=8, threads=2, cap=420.0, wall=510.0, synth_workers=8,
                       student=("crops=1",))  # INT8 (ONNX Runtime on 2 CPU threads) would not fit the cap
        if profile == "cpu":
            return cls(profile, 0.25, ("ucf", "xd"), (0, 1, 2), rows, "", ("plot_videos=0",), (), parallel=2,
                       threads=1, cap=1800.0, scale_xd=0.1, student=("crops=1", "optim.epochs=6", "evaluate_int8=u8s8"))
        if profile == "tiny":
            return cls(profile, 0.02, ("ucf",), (0,), ("mil", "stage1"), "",
                       ("plot_videos=0", "optim.epochs_stage1=1", "optim.epochs_stage2=1", "model.d_model=32",
                        "model.num_heads=2", "data.val_fraction=0"), ("epochs=1",), parallel=1, threads=1, cap=600.0)
        raise ValueError(f"profile {profile!r}: expected gpu, cpu or tiny")


@dataclass
class Job:
    """One (row, layout, seed) run and what became of it."""

    row: str
    layout: str
    seed: int
    status: str = "not run"  # one of STATUSES
    seconds: float | None = None
    peak_rss_mb: float | None = None
    metrics: dict[str, float] | None = None
    also: dict[str, dict[str, float]] | None = None  # the DERIVED rows' metrics, from the same run
    error: str | None = None
    run: str | None = None  # the run folder

    @property
    def name(self) -> str:
        return f"{self.row}-{self.layout}-s{self.seed}"


def jobs_of(plan: Plan) -> list[Job]:
    """Seed first (a wall cap leaves whole seeds), then layout (XD, the longer, first), teacher rows before the
    student (it waits for its teacher) and MIL."""
    layouts = sorted(plan.layouts, key=lambda lay: lay != "xd")
    rows = sorted((r for r in plan.rows if r not in DERIVED), key=lambda r: (r == "mil", r in DEPENDS))
    return [Job(row, layout, seed) for seed in plan.seeds for layout in layouts for row in rows]


def command(job: Job, plan: Plan, data: Path, run: Path) -> list[str]:
    """The child process of a job: ``python -m cplvad baseline|train`` with the row's overrides."""
    if job.row == "mil":
        overrides = (f"seed={job.seed}", f"threads={plan.threads}", *plan.mil)
        head = ["baseline", "--data", str(data), "--out", str(run)]
    elif job.row == "student":  # cplvad distill, then its streaming evaluation (teacher / offline / streaming)
        teacher = run.parent / Job(DEPENDS["student"], job.layout, job.seed).name
        overrides = (f"seed={job.seed}", f"threads={plan.threads}", *plan.student)
        head = ["distill", "--teacher", str(teacher), "--out", str(run)]
    else:
        config = PROJECT_ROOT / "configs" / "train" / f"{job.layout}{plan.config_suffix}.yaml"
        overrides = (f"seed={job.seed}", f"threads={plan.threads}", *plan.teacher, *ROWS[job.row][1])
        head = ["train", "--config", str(config), "--data", str(data), "--out", str(run)]
    return [sys.executable, "-m", "cplvad", *head, *[a for o in overrides for a in ("--set", o)]]


def accuracy(metrics: dict) -> dict[str, float]:
    """AUC / AP in %, mAP averages (already in %), from a run's metrics.json."""
    return {"auc": 100 * metrics["auc"], "ap": 100 * metrics["ap"], "map_avg": metrics["map"]["avg"],
            "map_corrected_avg": metrics["map_corrected"]["avg"]}


def alerts(streaming: dict) -> dict[str, float]:
    """The streaming row's alert figures (``cplvad eval``): false alarms per hour of normal video with the
    bundle's warm-up and without, median alert latency (s), anomalous segments alerted (%)."""
    events, cold = streaming["events"], streaming["events_no_warmup"]
    return {"false_alarms_per_hour": events["false_alarms_per_hour"],
            "false_alarms_per_hour_no_warmup": cold["false_alarms_per_hour"],
            "latency_s_median": events["latency_s_median"],
            "alerted_percent": 100 * events["segments_alerted"] / max(events["segments"], 1)}


def run_metrics(row: str, metrics: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(the row's figures, the DERIVED rows' figures) from its run's metrics.json."""
    if row == "student":
        streaming = {"student_stream": "student_streaming", "student_int8": "student_int8_streaming"}
        return accuracy(metrics["student_offline"]), {
            **({"student_teacher": accuracy(metrics["teacher"])} if "teacher" in metrics else {}),
            **{mine: accuracy(metrics[key]) | alerts(metrics[key]) for mine, key in streaming.items() if key in metrics}}
    return accuracy(metrics), {}


# ----------------------------------------------------------------------------------------------- running


def run_jobs(jobs: list[Job], plan: Plan, data: dict[str, Path], runs: Path, logs: Path,
             deadline: float | None = None, commands=command) -> list[Job]:
    """Run the jobs ``plan.parallel`` at a time, each capped at ``plan.cap`` s and at ``deadline``
    (time.monotonic); fills each job's status, seconds, peak RSS, metrics and error in place."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads),
           "OPENBLAS_NUM_THREADS": str(plan.threads), "TQDM_MININTERVAL": "30", "PYTHONPATH": os.pathsep.join(
               filter(None, [os.environ.get("PYTHONPATH"), str(PROJECT_ROOT)]))}
    pending = list(jobs)
    running: dict[int, tuple[Job, subprocess.Popen, float, float, object]] = {}
    reason = "the wall-time cap was reached"
    try:
        _schedule(pending, running, plan, data, runs, logs, deadline, commands, env)
    except Stopped as stop:
        reason = f"the plan received {stop}"  # SIGTERM / SIGINT: running jobs capped, report written
        for pid, (job, proc, started, limit, logfile) in running.items():
            os.killpg(pid, signal.SIGKILL)
            _, _, usage = os.wait4(pid, 0)
            logfile.close()
            job.seconds, job.peak_rss_mb = round(time.monotonic() - started, 1), round(usage.ru_maxrss / 1024, 1)
            job.status, job.error = "capped", f"stopped after {job.seconds:.0f} s: the plan received {stop}"
    for job in pending:
        job.error = f"not started: {reason}"
    return jobs


class Stopped(Exception):
    """The plan received SIGTERM or SIGINT (e.g. an outer ``timeout``)."""


def _stop(signum: int, _frame) -> None:
    raise Stopped(signal.Signals(signum).name)


def next_ready(pending: list[Job], jobs_by_name: dict[str, Job]) -> Job | None:
    """Take the first pending job whose run it depends on (DEPENDS) finished; a job whose dependency ended
    otherwise is dropped from ``pending`` as not run, with the reason. None: every pending job waits."""
    for job in list(pending):
        dep = jobs_by_name.get(Job(DEPENDS[job.row], job.layout, job.seed).name) if job.row in DEPENDS else None
        if dep is not None and dep.status != "ok":
            if dep.seconds is None:  # not finished yet
                continue
            pending.remove(job)
            job.error = f"not started: its {dep.row} run {dep.status}"
            continue
        pending.remove(job)
        return job
    return None


def _schedule(pending: list[Job], running: dict, plan: Plan, data: dict[str, Path], runs: Path, logs: Path,
              deadline: float | None, commands, env: dict[str, str]) -> None:
    jobs_by_name = {job.name: job for job in pending}
    while pending or running:
        now = time.monotonic()
        while pending and len(running) < plan.parallel and (deadline is None or now < deadline - 5):
            job = next_ready(pending, jobs_by_name)
            if job is None:
                break  # the rest wait for runs in progress
            job.run = str(runs / job.name)
            logfile = (logs / f"{job.name}.log").open("w")
            proc = subprocess.Popen(commands(job, plan, data[job.layout], Path(job.run)), cwd=PROJECT_ROOT,
                                    stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            limit = now + plan.cap if deadline is None else min(now + plan.cap, deadline)
            running[proc.pid] = (job, proc, now, limit, logfile)
            log.info("[%s] started (pid %d, %d running, %d waiting)", job.name, proc.pid, len(running), len(pending))
        if not running:
            break  # the deadline has passed: the pending jobs stay "not run"
        time.sleep(0.5)
        for pid, (job, proc, started, limit, logfile) in list(running.items()):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            capped = done == 0 and time.monotonic() >= limit
            if capped:
                os.killpg(pid, signal.SIGKILL)  # the run and anything it started
                done, status, usage = os.wait4(pid, 0)
            if done == 0:
                continue
            proc.returncode = os.waitstatus_to_exitcode(status)
            logfile.close()
            del running[pid]
            job.seconds = round(time.monotonic() - started, 1)
            job.peak_rss_mb = round(usage.ru_maxrss / 1024, 1)
            finish(job, capped, proc.returncode, round(limit - started), logs / f"{job.name}.log")


def finish(job: Job, capped: bool, code: int, cap: float, logfile: Path) -> None:
    metrics_file = Path(job.run) / "metrics.json"
    if capped:
        job.status, job.error = "capped", f"stopped at its {cap:.0f} s cap"
    elif code == 0 and metrics_file.is_file():
        job.status = "ok"
        job.metrics, job.also = run_metrics(job.row, json.loads(metrics_file.read_text()))
    else:
        tail = " | ".join(logfile.read_text(errors="replace").strip().splitlines()[-3:])
        job.status, job.error = "failed", f"exit code {code}: {tail}"
    (log.info if job.status == "ok" else log.error)("[%s] %s in %.0f s%s", job.name, job.status, job.seconds,
                                                    "" if job.status == "ok" else f": {job.error}")


# ----------------------------------------------------------------------------------------------- aggregation


def aggregate(jobs: list[dict]) -> dict[str, dict[str, dict]]:
    """{layout: {row: {metric: {mean, std, n}, seeds: [...], capped: [...], failed: [...], not_run: [...]}}} from
    job records (dicts of :class:`Job`). std: sample std (ddof 1) over the seeds that finished; None for one."""
    table: dict[str, dict[str, dict]] = {}
    for job in jobs:
        derived = [r for r, source in DERIVED.items() if source == job["row"]]
        for row in (job["row"], *derived):
            cell = table.setdefault(job["layout"], {}).setdefault(
                row, {"seeds": [], "capped": [], "failed": [], "not_run": [], "_values": []})
            values = job["metrics"] if row == job["row"] else (job.get("also") or {}).get(row)
            status = "not run" if job["status"] == "ok" and values is None else job["status"]  # measured later
            key = {"ok": "seeds", "capped": "capped", "failed": "failed", "not run": "not_run"}[status]
            cell[key].append(job["seed"])
            if status == "ok":
                cell["_values"].append(values)
    for rows in table.values():
        for cell in rows.values():
            values = cell.pop("_values")
            for metric in (*METRICS, *(m for m in ALERT_METRICS if values and m in values[0])):
                x = np.array([np.nan if v[metric] is None else v[metric] for v in values], np.float64)
                x = x[~np.isnan(x)]
                cell[metric] = {"mean": float(x.mean()) if len(x) else None,
                                "std": float(x.std(ddof=1)) if len(x) > 1 else None, "n": int(len(x))}
    return table


def cell_text(cell: dict, metric: str) -> str:
    value = cell.get(metric) or {"mean": None}
    if value["mean"] is None:
        return "–"
    return f"{value['mean']:.2f}" + (f" ± {value['std']:.2f}" if value["std"] is not None else "")


def runs_text(cell: dict, seeds: int) -> str:
    """'3 of 3 seeds', plus the seeds that were capped, failed or not run."""
    parts = [f"{len(cell['seeds'])} of {seeds}"]
    parts += [f"{word} {', '.join(map(str, cell[key]))}" for key, word in
              (("capped", "capped: seed"), ("failed", "failed: seed"), ("not_run", "not run: seed")) if cell[key]]
    return "; ".join(parts)


def caption(results: dict) -> str:
    hw = results["hardware"]
    device = hw.get("gpu") or "no GPU"
    return (f"{device}, {hw.get('cpu')} ({hw.get('cores')} cores); commit {results['commit']}; "
            f"wall time {results['wall_seconds'] / 60:.1f} min; {results['created']}")


def scale_text(plan: dict) -> str:
    """'0.25' or, where XD's differs, '0.25 (UCF) / 0.1 (XD)'."""
    xd = plan.get("scale_xd")
    return f"{plan['scale']:g}" if xd is None or xd == plan["scale"] else f"{plan['scale']:g} (UCF) / {xd:g} (XD)"


def regime_suffix(regime: str) -> str:
    """'' for the default regime, '-<regime>' otherwise: a regime's data, runs and README block are its own."""
    return "" if regime == "default" else f"-{regime}"


def regime_text(plan: dict) -> str:
    """'`cplvad synth`, generator seed 0' or, for another regime, its name, seed and knobs."""
    regime = plan.get("regime", "default")
    seed, knobs = REGIMES[regime]
    if regime == "default":
        return f"`cplvad synth`, generator seed {seed}"
    return f"`cplvad synth --regime {regime}`: generator seed {seed}, {', '.join(f'`{k}`' for k in knobs)}"


def write_report(results: dict, out: Path) -> str:
    """report.md and accuracy.png in ``out`` from results.json's content; returns the markdown."""
    plan = results["plan"]
    seeds = len(plan["seeds"])
    lines = [f"# Full accuracy report ({plan['profile']} profile)", "",
             f"*{caption(results)}*", "",
             f"Generated benchmark ({regime_text(plan)}) at scale {scale_text(plan)} of the training list; "
             f"training seeds {', '.join(map(str, plan['seeds']))}; teacher configs "
             f"`configs/train/<layout>{plan['config_suffix']}.yaml`"
             + (f" with {', '.join(f'`{o}`' for o in plan['teacher'])}" if plan["teacher"] else "")
             + (f"; MIL `configs/train/mil.yaml` with {', '.join(f'`{o}`' for o in plan['mil'])}" if plan["mil"]
                else "")
             + (f"; student `configs/distill/default.yaml` with {', '.join(f'`{o}`' for o in plan['student'])}"
                if plan.get("student") and "student" in plan["rows"] else "")
             + f". Mean ± sample std over the seeds that finished; each run capped at {plan['cap']:.0f} s"
             + (f", {plan['wall']:.0f} s in all" if plan.get("wall") else "") + ".", ""]
    for layout, rows in results["table"].items():
        lines += [f"## {layout.upper()} layout", "", "| row | AUC | AP | mAP avg | mAP avg corrected | seeds |",
                  "|---|---|---|---|---|---|"]
        for key in ROWS:
            if key in rows:
                cell = rows[key]
                lines.append(f"| {ROWS[key][0]} | " + " | ".join(cell_text(cell, m) for m in METRICS)
                             + f" | {runs_text(cell, seeds)} |")
        lines.append("")
        streaming = [key for key in ROWS if key in rows and "false_alarms_per_hour" in rows[key]]
        if streaming:
            lines += ["Streaming alerts (the bundle's smoother: threshold and warm-up from the normal training videos):",
                      "", "| row | false alarms / h of normal video | without warm-up | alert latency median s "
                      "| anomalous segments alerted % |", "|---|---|---|---|---|"]
            lines += [f"| {ROWS[key][0]} | " + " | ".join(cell_text(rows[key], m) for m in ALERT_METRICS) + " |"
                      for key in streaming]
            lines.append("")
    lines += ["![accuracy](accuracy.png)", "", "## Runs", "", "| run | status | seconds | peak RSS MB | note |",
              "|---|---|---|---|---|"]
    for job in results["jobs"]:
        lines.append(f"| {job['row']} {job['layout']} seed {job['seed']} | {job['status']} | {job['seconds'] or '–'} "
                     f"| {job['peak_rss_mb'] or '–'} | {(job['error'] or '').replace('|', '/')[:160]} |")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    plot(results, out / "accuracy.png")
    return text


def report_command(plan: dict) -> str:
    """The ``cplvad bench full`` command of a report: its profile and the options it ran with beyond the profile's."""
    base = Plan.make(plan["profile"])
    words = ["cplvad bench full", f"--profile {plan['profile']}"]
    if plan.get("regime", "default") != "default":
        words.append(f"--regime {plan['regime']}")
    rows = [r for r in plan.get("rows", base.rows) if r not in DERIVED]
    if rows != [r for r in base.rows if r not in DERIVED]:
        words.append("--rows " + " ".join(rows))
    words += [f"--set {o}" for o in plan.get("teacher", ()) if o not in base.teacher]
    words += [f"--student-set {o}" for o in plan.get("student", ()) if o not in base.student and "student" in rows]
    return " ".join(words)


def readme_block(results: dict, report: str) -> str:
    """The README's accuracy table: both layouts side by side, mean ± std, with what it ran on and where."""
    plan, table = results["plan"], results["table"]
    layouts = list(table)
    seeds = len(plan["seeds"])
    lines = [f"From [{report}/report.md]({report}/report.md) (`{report_command(plan)}`): "
             f"{caption(results)}. Generated benchmark ({regime_text(plan)}) at scale {scale_text(plan)} of the "
             f"training list, training "
             f"seeds {', '.join(map(str, plan['seeds']))}, mean ± std over the seeds that finished.", "",
             "| row | " + " | ".join(f"{lay.upper()} AUC | {lay.upper()} AP | {lay.upper()} mAP avg" for lay in layouts)
             + " | seeds |", "|---|" + "---|---|---|" * len(layouts) + "---|"]
    for key in ROWS:
        cells = [table[lay].get(key) for lay in layouts]
        if not any(cells):
            continue
        figures = " | ".join(" | ".join(cell_text(c, m) for m in ("auc", "ap", "map_avg")) if c else "– | – | –"
                             for c in cells)
        runs = "; ".join(f"{lay.upper()} {runs_text(c, seeds)}" for lay, c in zip(layouts, cells) if c)
        lines.append(f"| {ROWS[key][0]} | {figures} | {runs} |")
    for lay, key in ((lay, key) for lay in layouts for key in ("student_stream", "student_int8")):
        stream = table[lay].get(key)
        if stream and (stream.get("false_alarms_per_hour") or {}).get("mean") is not None:
            which = "the student" if key == "student_stream" else "the INT8 student"
            lines += ["", f"{lay.upper()} streaming alerts of {which} (the bundle's smoother): "
                      f"{cell_text(stream, 'false_alarms_per_hour')} false alarms per hour of normal video "
                      f"({cell_text(stream, 'false_alarms_per_hour_no_warmup')} without the warm-up), "
                      f"{cell_text(stream, 'alerted_percent')} % of anomalous segments alerted, median latency "
                      f"{cell_text(stream, 'latency_s_median')} s."]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """AUC, AP and mAP per row, one panel per layout, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layouts = list(results["table"])
    fig, axes = plt.subplots(1, max(len(layouts), 1), figsize=(7 * max(len(layouts), 1), 4.2), squeeze=False)
    for ax, layout in zip(axes[0], layouts):
        rows = [k for k in ROWS if k in results["table"][layout]]
        x = np.arange(len(rows))
        for i, metric in enumerate(("auc", "ap", "map_avg")):
            cells = [results["table"][layout][k][metric] for k in rows]
            mean = [c["mean"] if c["mean"] is not None else np.nan for c in cells]
            std = [c["std"] or 0.0 for c in cells]
            ax.bar(x + (i - 1) * 0.27, mean, 0.27, yerr=std, capsize=2,
                   label={"auc": "AUC", "ap": "AP", "map_avg": "mAP avg"}[metric])
        ax.set_xticks(x, [ROWS[k][0].replace(" (", "\n(") for k in rows], rotation=30, ha="right", fontsize=7)
        ax.set(title=f"{layout.upper()} layout", ylabel="%", ylim=(0, 100))
        ax.legend(fontsize=7)
    fig.suptitle(caption(results), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- machine


def hardware() -> dict:
    from edge.backends.openvino import cpu_flags, cpu_model, isa_summary  # imports no openvino

    cpu = f"{cpu_model()} ({isa_summary(cpu_flags())})"
    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.strip().replace("\n", " + ") or None
    except (OSError, subprocess.SubprocessError):
        pass
    memory = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), None) if Path("/proc/meminfo").exists() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "memory_gb": memory and round(memory, 1),
            "python": platform.python_version()}


def commit() -> str:
    """HEAD (+dirty) from git; else $CPLVAD_COMMIT (a copy of the tree without .git); else 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CPLVAD_COMMIT", "").strip() or "unknown"


def synth(plan: Plan, work: Path, logs: Path) -> dict[str, Path]:
    """Both layouts' benchmark, generated side by side (``plan.synth_workers`` processes each); reused when the
    folder already holds this scale."""
    data, procs = {}, []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for layout in plan.layouts:
        scale = plan.scale_of(layout)
        folder = data[layout] = work / "data" / f"{layout}-{scale:g}{regime_suffix(plan.regime)}"
        meta = folder / "dataset.json"
        if meta.is_file() and json.loads(meta.read_text()).get("scale") == scale:
            continue
        args = [sys.executable, "-m", "cplvad", "synth", "--layout", layout, "--regime", plan.regime, "--scale",
                str(scale), "--out", str(folder), "--force", "--workers", str(plan.synth_workers)]
        logs.mkdir(parents=True, exist_ok=True)
        procs.append((layout, subprocess.Popen(args, cwd=PROJECT_ROOT, env=env,
                                               stdout=(logs / f"synth-{layout}.log").open("w"),
                                               stderr=subprocess.STDOUT)))
    for layout, proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"synth {layout} failed (exit code {proc.returncode}): {logs / f'synth-{layout}.log'}")
    return data


def merge(parts: list[dict]) -> dict:
    """One report from several results.json contents (e.g. seeds run on two GPU sessions): per (row, layout,
    seed) a finished run wins over a capped, failed or unstarted one, else the later file's; the wall times add
    up; hardware and commits that differ are all named."""
    best: dict[tuple, dict] = {}
    for part in parts:
        for job in part["jobs"]:
            key = (job["row"], job["layout"], job["seed"])
            if key not in best or job["status"] == "ok" or best[key]["status"] != "ok":
                best[key] = job
    jobs = list(best.values())
    hardware = {k: " | ".join(dict.fromkeys(str(v) for p in parts if (v := p["hardware"].get(k)) is not None)) or None
                for k in parts[0]["hardware"]}  # a field no part knows (no GPU) stays None
    plan = dict(parts[0]["plan"])
    plan["seeds"] = sorted({j["seed"] for j in jobs})
    plan["rows"] = [r for r in ROWS if any(r in p["plan"]["rows"] for p in parts)]
    for row, key in (("mil", "mil"), ("student", "student")):  # the overrides of the part that ran the row
        plan[key] = next((p["plan"].get(key) for p in parts if row in p["plan"]["rows"]), plan.get(key))
    return {"created": parts[-1]["created"], "commit": " | ".join(dict.fromkeys(p["commit"] for p in parts)),
            "hardware": hardware, "wall_seconds": round(sum(p["wall_seconds"] for p in parts), 1), "plan": plan,
            "rows": parts[0]["rows"], "table": aggregate(jobs), "jobs": jobs, "merged": len(parts)}


def default_out(regime: str) -> Path:
    """Where a report goes unless told: ``bench/results/full``, ``bench/results/full_<regime>`` for another regime."""
    return PROJECT_ROOT / "bench" / "results" / ("full" + regime_suffix(regime).replace("-", "_"))


def readme_block_name(out: Path) -> str:
    """The README block a report folder fills: ``accuracy`` for ``full``, ``accuracy-<x>`` for ``full_<x>`` (a
    regime's report, or some rows at other settings) and for any other folder ``<x>``."""
    return "accuracy" if out.name == "full" else "accuracy-" + out.name.removeprefix("full_")


def update_readme(readme: Path, results: dict, out: Path) -> None:
    """Rewrite the README block of the report folder ``out`` (:func:`readme_block_name`) from ``results``
    (bench.report.replace_block)."""
    from bench.report import replace_block

    try:
        where = out.resolve().relative_to(readme.resolve().parent)
    except ValueError:
        where = out
    name = readme_block_name(out)
    readme.write_text(replace_block(readme.read_text(), readme_block(results, str(where)), name))
    log.info("updated the %s block of %s", name, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.full", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("gpu", "cpu", "tiny"))
    parser.add_argument("--readme", type=Path, help="also rewrite this README's accuracy block from the report")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="write one report (to --out) from several results.json files instead of running")
    parser.add_argument("--out", type=Path, help="the report folder (default bench/results/full, full_<regime> "
                        "for another regime; its name picks the README block: full -> accuracy, full_<x> -> "
                        "accuracy-<x>)")
    parser.add_argument("--work", type=Path, default=None, help="data and runs (default bench/results/tmp/full)")
    parser.add_argument("--parallel", type=int, help="runs at a time")
    parser.add_argument("--threads", type=int, help="torch / BLAS threads per run")
    parser.add_argument("--cap", type=float, help="seconds per run")
    parser.add_argument("--wall", type=float, help="seconds in all, data generation included (0: no limit)")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--rows", nargs="+", choices=[r for r in ROWS if r not in DERIVED],
                        help="student: distilled from the cross row's run of the same seed (which it needs)")
    parser.add_argument("--layouts", nargs="+", choices=("ucf", "xd"))
    parser.add_argument("--scale", type=float, help="of every layout's training list")
    parser.add_argument("--scale-xd", type=float, help="of XD's training list, where it differs from --scale")
    parser.add_argument("--synth-workers", type=int)
    parser.add_argument("--regime", choices=sorted(REGIMES),
                        help="the benchmark's regime (cplvad synth --regime; its own generator seed)")
    parser.add_argument("--set", dest="teacher_set", action="append", default=[], metavar="KEY=VALUE",
                        help="one more override of every teacher row (e.g. model.fusion=mean, the paper's rule)")
    parser.add_argument("--student-set", action="append", default=[], metavar="KEY=VALUE",
                        help="one more override of the distillation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.merge:
        missing = [str(path) for path in args.merge if not path.is_file()]
        if missing:
            parser.error(f"--merge: {', '.join(missing)} not found")
        results = merge([json.loads(path.read_text()) for path in args.merge])
        out = args.out or default_out(results["plan"].get("regime", "default"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(write_report(results, out))
        if args.readme:
            update_readme(args.readme, results, out)
        return 0
    if args.profile is None:
        parser.error("--profile is required (or --merge)")
    plan = Plan.make(args.profile)
    changes = {k: v for k, v in {"parallel": args.parallel, "threads": args.threads, "cap": args.cap,
                                 "seeds": args.seeds and tuple(args.seeds), "rows": args.rows and tuple(args.rows),
                                 "layouts": args.layouts and tuple(args.layouts), "scale": args.scale,
                                 "scale_xd": args.scale_xd,
                                 "synth_workers": args.synth_workers, "regime": args.regime}.items()
               if v is not None}
    if args.teacher_set:
        changes["teacher"] = (*plan.teacher, *args.teacher_set)
    if args.student_set:
        changes["student"] = (*plan.student, *args.student_set)
    if args.wall is not None:
        changes["wall"] = args.wall or None
    if args.scale is not None and args.scale_xd is None:
        changes["scale_xd"] = None  # --scale alone: the same scale for both
    plan = replace(plan, **changes)
    for key in ("parallel", "threads", "synth_workers"):
        if getattr(plan, key) < 1:
            parser.error(f"--{key.replace('_', '-')} {getattr(plan, key)}: expected at least 1")
    work = args.work or PROJECT_ROOT / "bench" / "results" / "tmp" / "full"
    out = args.out or default_out(plan.regime)
    out.mkdir(parents=True, exist_ok=True)
    tag = regime_suffix(plan.regime)  # a regime's runs never replace the default's
    logs = work / f"logs{tag}"
    started = time.monotonic()
    deadline = started + plan.wall if plan.wall else None
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    code = commit()  # what the runs start from, not what the tree holds when they end
    log.info("full report, %s profile: %s", plan.profile, asdict(plan))
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    jobs = jobs_of(plan)
    try:
        data = synth(plan, work, logs)
        log.info("data ready in %.0f s", time.monotonic() - started)
        run_jobs(jobs, plan, data, work / f"runs{tag}", logs, deadline)
    except (Stopped, RuntimeError) as err:  # no data: every run is listed as not run, with the reason
        log.error("data generation: %s", err)
        for job in jobs:
            job.error = f"not started: data generation {'was stopped by ' if isinstance(err, Stopped) else ''}{err}"
    records = [asdict(j) for j in jobs]
    results = {"created": created, "commit": code, "hardware": hardware(),
               "wall_seconds": round(time.monotonic() - started, 1), "plan": asdict(plan),
               "rows": {k: v[0] for k, v in ROWS.items()}, "table": aggregate(records), "jobs": records}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(write_report(results, out))
    if args.readme:
        update_readme(args.readme, results, out)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:  # every run's log, for the runs that did not finish too
        tar.add(logs, arcname="logs")
    counts = {s: sum(j.status == s for j in jobs) for s in STATUSES}
    log.info("%s in %.0f s -> %s", ", ".join(f"{n} {s}" for s, n in counts.items() if n), results["wall_seconds"],
             out)
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
