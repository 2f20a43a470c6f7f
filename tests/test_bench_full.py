"""bench/full.py: mean +- std over seeds with capped, failed and unstarted runs kept; the runner's caps."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from bench.full import Job, Plan, _stop, aggregate, jobs_of, main, run_jobs, write_report


def record(row: str, seed: int, status: str, auc: float | None = None, layout: str = "ucf") -> dict:
    metrics = None if auc is None else {"auc": auc, "ap": auc / 2, "map_avg": 10.0 + seed, "map_corrected_avg": 5.0}
    return asdict(Job(row, layout, seed, status, 1.0, 100.0, metrics, None if status == "ok" else status))


def test_mean_and_sample_std_over_seeds_and_capped_rows_kept(tmp_path: Path) -> None:
    jobs = [record("cross", 0, "ok", 80.0), record("cross", 1, "ok", 82.0), record("cross", 2, "ok", 84.0),
            record("stage1", 0, "ok", 70.0), record("stage1", 1, "capped"), record("stage1", 2, "failed"),
            record("mil", 0, "capped"), record("mil", 1, "not run"), record("mil", 0, "ok", 90.0, layout="xd")]
    table = aggregate(jobs)
    cross = table["ucf"]["cross"]
    assert cross["auc"] == {"mean": 82.0, "std": 2.0, "n": 3}  # sample std: sqrt(((-2)^2 + 0 + 2^2) / 2)
    assert cross["ap"]["mean"] == 41.0 and cross["map_avg"] == {"mean": 11.0, "std": 1.0, "n": 3}
    stage1 = table["ucf"]["stage1"]
    assert stage1["auc"] == {"mean": 70.0, "std": None, "n": 1}
    assert (stage1["seeds"], stage1["capped"], stage1["failed"]) == ([0], [1], [2])
    mil = table["ucf"]["mil"]
    assert mil["auc"] == {"mean": None, "std": None, "n": 0} and mil["capped"] == [0] and mil["not_run"] == [1]
    assert table["xd"]["mil"]["auc"]["mean"] == 90.0

    results = {"created": "now", "commit": "abc", "wall_seconds": 60.0, "jobs": jobs, "table": table,
               "hardware": {"cpu": "a CPU", "cores": 2, "gpu": None},
               "plan": asdict(Plan.make("tiny")) | {"seeds": (0, 1, 2)}}
    text = write_report(results, tmp_path)
    assert "| CPL-VAD (cross, CAR) | 82.00 ± 2.00 | 41.00 ± 1.00 |" in text
    assert "| stage 1 (video labels only) | 70.00 | 35.00 |" in text and "capped: seed 1; failed: seed 2" in text
    assert "| MIL baseline | – | – | – | – | 0 of 3; capped: seed 0; not run: seed 1 |" in text
    assert "no GPU, a CPU (2 cores); commit abc; wall time 1.0 min" in text
    assert (tmp_path / "accuracy.png").stat().st_size > 1000


def test_jobs_are_ordered_seed_first() -> None:
    plan = replace(Plan.make("gpu"), rows=("mil", "cross"), seeds=(0, 1))
    assert [j.name for j in jobs_of(plan)][:5] == ["cross-xd-s0", "mil-xd-s0", "cross-ucf-s0", "mil-ucf-s0",
                                                   "cross-xd-s1"]


def test_runner_records_capped_failed_and_unstarted_runs(tmp_path: Path) -> None:
    """Real child processes: one writes its metrics, one sleeps past its cap, one fails; the wall cap leaves
    the last one unstarted."""
    metrics = {"auc": 0.8, "ap": 0.5, "map": {"avg": 12.0}, "map_corrected": {"avg": 11.0}}
    scripts = {"cross": f"import json, pathlib, sys; p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True); "
                        f"(p / 'metrics.json').write_text(json.dumps({metrics!r}))",
               "stage1": "import time; time.sleep(60)",
               "self": "import sys; print('bad value'); sys.exit(3)",
               "mil": "import time; time.sleep(60)"}

    def commands(job: Job, plan: Plan, data: Path, run: Path) -> list[str]:
        return [sys.executable, "-c", scripts[job.row], str(run)]

    plan = replace(Plan.make("tiny"), rows=("cross", "stage1", "self", "mil"), parallel=2, cap=3.0)
    jobs = jobs_of(plan)
    run_jobs(jobs, plan, {"ucf": tmp_path}, tmp_path / "runs", tmp_path / "logs", commands=commands,
             deadline=time.monotonic() + 12.0)
    status = {j.row: j for j in jobs}
    assert status["cross"].status == "ok" and status["cross"].metrics == pytest.approx(
        {"auc": 80.0, "ap": 50.0, "map_avg": 12.0, "map_corrected_avg": 11.0})
    assert status["stage1"].status == "capped" and status["stage1"].seconds < 10
    assert status["self"].status == "failed" and "exit code 3" in status["self"].error
    assert "bad value" in status["self"].error
    assert status["mil"].status in ("capped", "not run")
    assert json.dumps([asdict(j) for j in jobs])  # the records serialise


def test_sigterm_caps_the_running_runs(tmp_path: Path) -> None:
    """An outer timeout (SIGTERM) stops the plan: running runs are recorded as capped, the rest as not run."""
    plan = replace(Plan.make("tiny"), rows=("stage1", "mil"), parallel=1, cap=60.0)
    jobs = jobs_of(plan)
    previous = signal.signal(signal.SIGTERM, _stop)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        started = time.monotonic()
        run_jobs(jobs, plan, {"ucf": tmp_path}, tmp_path / "runs", tmp_path / "logs",
                 commands=lambda *_: [sys.executable, "-c", "import time; time.sleep(60)"])
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - started < 20
    assert jobs[0].status == "capped" and "SIGTERM" in jobs[0].error
    assert jobs[1].status == "not run" and "SIGTERM" in jobs[1].error


@pytest.mark.parametrize("profile", ["gpu", "cpu", "tiny"])
def test_every_run_of_a_profile_is_a_valid_config(profile: str, tmp_path: Path) -> None:
    """The overrides each child gets resolve against its step's config (a bad key would fail every run)."""
    from bench.full import DERIVED, command
    from edge.configfile import load_config
    from train.training.baseline import DEFAULT_CONFIG, MILConfig
    from train.training.distill_config import DistillConfig
    from train.training.teacher import TrainConfig

    plan = Plan.make(profile)
    for job in jobs_of(plan):
        args = command(job, plan, tmp_path, tmp_path / job.name)
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        if job.row == "mil":
            cfg = load_config(MILConfig, DEFAULT_CONFIG, sets)
            assert (cfg.seed, cfg.threads) == (job.seed, plan.threads)
        elif job.row == "student":  # distilled from the cross run of its seed, which comes first
            teacher = Path(args[args.index("--teacher") + 1])
            assert teacher == tmp_path / f"cross-{job.layout}-s{job.seed}"
            assert [j.name for j in jobs_of(plan)].index(teacher.name) < jobs_of(plan).index(job)
            cfg = load_config(DistillConfig, Path("configs/distill/default.yaml"), sets)
            assert (cfg.seed, cfg.threads) == (job.seed, plan.threads)
        else:
            config = Path(args[args.index("--config") + 1])
            assert config.is_file()
            cfg = load_config(TrainConfig, config, sets)
            assert cfg.seed == job.seed and cfg.pseudo.mode == {"stage1": "none", "b2c": "b2c", "c2b": "c2b",
                                                                "self": "self"}.get(job.row, "cross")
            assert cfg.pseudo.car == (job.row != "nocar")
            if profile == "gpu":
                assert (cfg.model.d_model, cfg.optim.batch_size, cfg.bf16) == (512, 32, True)
    assert len(jobs_of(plan)) == len(set(plan.rows) - set(DERIVED)) * len(plan.layouts) * len(plan.seeds)


def test_merge_keeps_finished_runs_of_every_file(tmp_path: Path) -> None:
    def part(name: str, jobs: list[dict], gpu: str) -> Path:
        results = {"created": "t", "commit": name, "wall_seconds": 100.0, "jobs": jobs, "table": aggregate(jobs),
                   "hardware": {"cpu": "x", "cores": 16, "gpu": gpu}, "rows": {}, "plan": asdict(Plan.make("gpu"))}
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        return tmp_path / name / "results.json"

    first = part("a", [record("cross", 0, "ok", 80.0), record("cross", 1, "capped")], "H200")
    second = part("b", [record("cross", 1, "ok", 84.0), record("cross", 0, "not run")], "H200")
    assert main(["--merge", str(first), str(second), "--out", str(tmp_path / "out")]) == 0
    merged = json.loads((tmp_path / "out" / "results.json").read_text())
    cell = merged["table"]["ucf"]["cross"]
    assert cell["seeds"] == [0, 1] and cell["capped"] == [] and cell["auc"]["mean"] == 82.0
    assert merged["commit"] == "a | b" and merged["hardware"]["gpu"] == "H200" and merged["wall_seconds"] == 200.0
    assert "H200" in (tmp_path / "out" / "report.md").read_text()


def test_merge_keeps_the_rows_and_overrides_of_every_part() -> None:
    from bench.full import merge

    teacher = {"plan": asdict(replace(Plan.make("cpu"), rows=("mil", "cross"), student=())), "jobs": []}
    students = {"plan": asdict(replace(Plan.make("cpu"), rows=("student",))), "jobs": []}
    for part in (teacher, students):
        part |= {"created": "t", "commit": "c", "wall_seconds": 1.0, "rows": {}, "hardware": {"cpu": "x"}}
    plan = merge([teacher, students])["plan"]
    assert plan["rows"] == ["mil", "cross", "student"] and "evaluate_int8=u8s8" in plan["student"]


def test_the_student_waits_for_its_teacher_and_reports_its_rows() -> None:
    from bench.full import Job, aggregate, next_ready

    cross, student, mil = Job("cross", "ucf", 0), Job("student", "ucf", 0), Job("mil", "ucf", 0)
    by_name = {j.name: j for j in (cross, student, mil)}
    pending = [student, mil]
    assert next_ready(pending, by_name) is mil and pending == [student]  # cross still running: the student waits
    assert next_ready(pending, by_name) is None
    cross.status, cross.seconds = "capped", 10.0
    assert next_ready(pending, by_name) is None and pending == []  # its teacher was capped: not run, with why
    assert student.status == "not run" and "cross run capped" in student.error
    figures = {"auc": 80.0, "ap": 30.0, "map_avg": 10.0, "map_corrected_avg": 12.0}
    alerts = {"false_alarms_per_hour": 2.0, "false_alarms_per_hour_no_warmup": 3.0, "latency_s_median": None,
              "alerted_percent": 50.0}
    jobs = [{"row": "student", "layout": "ucf", "seed": s, "status": "ok", "metrics": figures,
             "also": {"student_stream": figures | alerts | {"latency_s_median": 4.0 + s}}} for s in (0, 1)]
    jobs[1]["also"]["student_int8"] = figures | alerts  # seed 0's run predates the INT8 row: not run for it
    table = aggregate(jobs)["ucf"]
    assert table["student"]["auc"]["mean"] == 80.0 and "false_alarms_per_hour" not in table["student"]
    assert table["student_int8"]["seeds"] == [1] and table["student_int8"]["not_run"] == [0]
    assert table["student_stream"]["latency_s_median"] == {"mean": 4.5, "std": pytest.approx(0.7071, abs=1e-4), "n": 2}


def test_readme_block_from_a_report(tmp_path: Path) -> None:
    from bench.full import aggregate, update_readme
    from bench.report import markers

    figures = {"auc": 80.0, "ap": 30.0, "map_avg": 10.0, "map_corrected_avg": 12.0}
    jobs = [{"row": row, "layout": lay, "seed": s, "status": "ok", "metrics": figures, "also": None}
            for row in ("mil", "cross") for lay in ("ucf", "xd") for s in (0, 1)]
    results = {"plan": {"profile": "cpu", "scale": 0.25, "scale_xd": 0.1, "seeds": [0, 1]},
               "hardware": {"cpu": "X", "cores": 2, "gpu": None}, "commit": "abc", "wall_seconds": 60.0,
               "created": "today", "table": aggregate(jobs), "jobs": jobs}
    start, end = markers("accuracy")
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{start}\nold\n{end}\n")
    update_readme(readme, results, tmp_path / "bench" / "results" / "full")
    text = readme.read_text()
    assert "old" not in text and "scale 0.25 (UCF) / 0.1 (XD)" in text and "no GPU, X (2 cores)" in text
    assert "| CPL-VAD (cross, CAR) | 80.00 ± 0.00 | 30.00 ± 0.00 | 10.00 ± 0.00 | 80.00 ± 0.00 |" in text
    assert "(bench/results/full/report.md)" in text


def test_a_regime_report_writes_its_own_readme_block(tmp_path: Path) -> None:
    """``--regime context`` fills ``accuracy-context`` and leaves the default report's block alone; its caption
    names the regime's generator seed and knobs."""
    from bench.full import aggregate, update_readme
    from bench.report import markers

    figures = {"auc": 70.0, "ap": 20.0, "map_avg": 5.0, "map_corrected_avg": 6.0}
    jobs = [{"row": "mil", "layout": "ucf", "seed": 0, "status": "ok", "metrics": figures, "also": None}]
    results = {"plan": {"profile": "cpu", "scale": 0.25, "seeds": [0], "regime": "context"},
               "hardware": {"cpu": "X", "cores": 2, "gpu": None}, "commit": "abc", "wall_seconds": 60.0,
               "created": "today", "table": aggregate(jobs), "jobs": jobs}
    (start, end), (cstart, cend) = markers("accuracy"), markers("accuracy-context")
    readme = tmp_path / "README.md"
    readme.write_text(f"{start}\ndefault table\n{end}\n{cstart}\nold\n{cend}\n")
    update_readme(readme, results, tmp_path / "bench" / "results" / "full_context")
    text = readme.read_text()
    assert "default table" in text and "old" not in text and "--regime context" in text
    assert "generator seed 2, `context_fraction=0.3`" in text and "| MIL baseline | 70.00 |" in text


def test_the_report_folder_names_its_readme_block_and_the_command_its_options() -> None:
    """full -> accuracy, full_<x> -> accuracy-<x>; a regime's report goes to full_<regime> unless told; the
    README names the options a report ran with beyond its profile's."""
    from bench.full import default_out, readme_block_name, report_command

    assert readme_block_name(Path("bench/results/full")) == "accuracy"
    assert readme_block_name(default_out("context")) == "accuracy-context"
    assert readme_block_name(Path("/x/full_defaults")) == "accuracy-defaults"
    assert default_out("default").name == "full" and default_out("context").name == "full_context"
    plan = asdict(replace(Plan.make("cpu"), rows=("mil", "stage1", "cross"), regime="context",
                          teacher=("plot_videos=0", "model.fusion=mean")))
    assert report_command(plan) == ("cplvad bench full --profile cpu --regime context --rows mil stage1 cross "
                                    "--set model.fusion=mean")
    assert report_command(asdict(Plan.make("gpu"))) == "cplvad bench full --profile gpu"
