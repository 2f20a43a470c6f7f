"""The ``cplvad`` command: every step answers --help, user errors are one line naming the key and its origin."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cplvad.cli import BENCHMARKS, STEPS, main

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_help_lists_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("synth", "baseline", "train", "distill", "eval", "export", "prompts", "extract", "calibrate",
                 "engine", "run", "bench", "demo"):
        assert f"  {name} " in out
    assert main([]) == 2  # no step: the usage, and a usage error


def test_unknown_step_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_has_help(step: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main([step, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cplvad {step}"), out[:200]


@pytest.mark.parametrize("step", ["train", "baseline", "distill", "calibrate", "run"])
def test_config_steps_list_their_keys_with_defaults(step: str, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main([step, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--set KEY=VALUE" in out and "config keys" in out
    keys = [line.split(" = ")[0].strip() for line in out.split("config keys", 1)[1].splitlines()[1:]
            if line.startswith("  ") and not line.startswith("      ") and " = " in line]
    assert len(keys) >= 5, out


def test_train_help_shows_a_default_and_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert '  data.dir = "data/ucf"' in out and "  optim.lr = 0.0001" in out
    assert "DataLoader worker processes" in out  # a description written as the field's comment


def test_a_typo_in_an_override_is_one_line_naming_the_key_and_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(ROOT / "configs/train/ucf.yaml"), "--set", "optim.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("cplvad train: error: --set optim.lrr=")
    assert "unknown key 'optim.lrr'; did you mean 'optim.lr'?" in err


def test_a_bad_value_names_the_key_the_value_and_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--data", "d", "--out", "o", "--set", "lr=abc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set lr=abc: lr = 'abc'" in err


def test_a_bad_key_in_a_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("optim:\n  epochs: 3\n  epoch: 4\n")
    assert main(["distill", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cplvad distill: error: {path}: unknown key 'optim.epoch'; did you mean 'optim.epochs'?")
    assert main(["distill", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err


def test_the_python_m_alias_exits_2_with_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "train.training.teacher", "--set", "optim.lr=fast"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cplvad train: error: --set optim.lr=fast: optim.lr = 'fast': Input should be a valid number, unable to "
        "parse string as a number"]


def test_run_imports_neither_torch_nor_train() -> None:
    code = ("import sys\nfrom cplvad.cli import main\nassert main(['run', '--help']) == 0\n"
            "upper = ('torch', 'train', 'transformers', 'calibration')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in upper)\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "cplvad", "run", "--set", "stats.interval=3", "--validate-config"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown key 'stats.interval'; did you mean 'stats.interval_s'?" in done.stderr


def test_eval_scores_selects_the_offline_evaluation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--scores=x.npz", "--help"]) == 0
    assert "--scores" in capsys.readouterr().out.split("options:")[1]
    assert main(["eval", "--help"]) == 0
    assert "--run" in capsys.readouterr().out


def test_every_step_imports_from_outside_the_checkout(tmp_path: Path) -> None:
    """The installed command (make setup: pip install -e) finds every step's package, bench/ and showcase/ too."""
    code = "import importlib\nfrom cplvad.cli import STEPS\nfor s in STEPS.values(): importlib.import_module(s.module)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_runs_on_its_own(name: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`cplvad bench NAME` reaches that benchmark's own flags (not bench.run's)."""
    monkeypatch.chdir(ROOT)
    assert main(["bench", name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--quick" not in out, out[:200]
