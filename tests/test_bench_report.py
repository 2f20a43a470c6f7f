"""bench.report / bench.run helpers on small hand-made result dicts (no benchmark is run here)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.report import (END, PUBLISHED_NOTE, START, accuracy_table, edge_table, fmt, ratio, replace_block,
                          soak_lines, soak_table, summary_rows, update_readme, write_report)
from bench.run import accuracy_row, downsample_curve


def _soak_row(clip: str, precision: str, cameras: int, real_time: bool, bundle: str = "random weights",
              int8: list[str] | None = None) -> dict:
    return {"clip": clip, "precision": precision, "int8_models": int8 or [], "bundle": bundle, "cameras": cameras,
            "rss_slope_mb_per_min": 0.25 * cameras, "drop_fraction": 0.0 if real_time else 0.125,
            "max_queue_depth": 2 * cameras, "snippets_per_s": 0.75 * cameras,
            "produced_snippets_per_s": 0.78 * cameras, "real_time": real_time}


def results() -> dict:
    curve = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0], "recall": [1.0, 0.5, 0.0],
             "precision": [0.3, 0.7, 1.0]}
    return {
        "mode": "quick", "created": "2026-11-23T00:00:00+00:00", "total_seconds": 600.0,
        "machine": {"cpu": "test cpu", "cores": 2, "load_average_1min": 1.0, "torch": "x", "onnxruntime": "y"},
        "plan": {"scale": 0.03, "expected_full": "~5 h"},
        "accuracy": {"ucf": {
            "MIL baseline": {"auc": 70.0, "ap": 20.0, "map_avg": 1.0, "map_corrected_avg": 1.1},
            "CPL-VAD teacher": {"auc": 80.5, "ap": 30.0, "map_avg": 5.0, "map_corrected_avg": 5.4},
            "student INT8 streaming (gate subset)": {"auc": 79.0, "ap": 29.0},
        }},
        "training": [{"stage": "CPL-VAD teacher ucf", "epochs": 6, "seconds": 120.0, "seconds_per_epoch": 15.0,
                      "peak_rss_mb": 900.0}],
        "clip": [{"source": "random", "runtime": "torch eager", "batch": 8, "images_per_s": 2.0},
                 {"source": "random", "runtime": "onnxruntime fp32", "batch": 8, "images_per_s": 3.0}],
        "int8": [{"model": "head", "flavour": "u8s8", "batch": 8, "fp32_ms": 10.0, "int8_ms": 5.0, "speedup": 2.0,
                  "passed": True}],
        "head": [{"batch": 1, "window": 64, "onnxruntime_ms": 4.0, "onnxruntime_ms_per_window": 4.0}],
        "edge": [{"clip": "tiny", "cameras": 1, "encoded_fps": 40.0, "camera_fps_supported": 160.0,
                  "ms_per_item": {"clip": 20.0}},
                 {"clip": "tiny", "cameras": 2, "encoded_fps": 60.0, "camera_fps_supported": 120.0,
                  "ms_per_item": {"clip": 15.0}}],
        "soak": {"seconds": 30.0, "video": "clip.mp4", "batch": 8, "queue_size": 16, "max_drop": 0.01, "notes": [],
                 "rows": [_soak_row("tiny", "fp32", 1, True), _soak_row("tiny", "fp32", 2, False),
                          _soak_row("random", "int8", 1, False, bundle="ucf-random", int8=["head"])],
                 "largest_real_time": [{"clip": "tiny", "precision": "fp32", "bundle": "random weights",
                                        "cameras": 1},
                                       {"clip": "random", "precision": "int8", "bundle": "ucf-random",
                                        "cameras": 0}]},
        "alert": {"anomalies": 3, "hits": 2, "latency_snippets_mean": 2.5, "latency_seconds_mean": 2.5,
                  "realtime": {"videos": 3, "alerts": 2, "latency_seconds_mean": 3.25, "latency_seconds_max": 4.0}},
        "bound": {"gemm_gflops": 100.0, "clip_gflop_per_image": 35.2, "best_runtime": "onnxruntime fp32 batch 8",
                  "best_images_per_s": 3.0, "achieved_gflops": 105.6, "images_per_s_at_peak": 2.84,
                  "fraction_of_peak": 1.056},
        "curves": {"ucf": {"CPL-VAD teacher": curve}},
        "timelines": {"ucf": [{"video": "Arson001", "gt": [0, 1, 1, 0], "scores": {"CPL-VAD teacher": [.1, .9, .8, .2]}}]},
        "steps": [{"name": "synth ucf", "ok": True, "error": None},
                  {"name": "calibrate ucf", "ok": False, "error": "exit code 1"}],
    }


def test_fmt_and_ratio() -> None:
    assert fmt(None) == "–"
    assert fmt(88.239) == "88.24"
    assert fmt(3, 1) == "3"
    assert fmt(3.0, 1) == "3.0"
    assert fmt(True) == "yes"
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None and ratio(None, 2.0) is None


def test_accuracy_table_marks_published_rows_as_another_dataset() -> None:
    table = accuracy_table(results(), "ucf").splitlines()
    assert table[0] == "| model | AUC | AP | mAP avg | mAP avg corrected | data |"
    assert table[3] == "| CPL-VAD teacher | 80.50 | 30.00 | 5.00 | 5.40 | generated benchmark |"
    assert "| student INT8 streaming (gate subset) | 79.00 | 29.00 | – | – |" in table[4]
    assert table[5] == f"| CPL-VAD (paper) | 88.24 | – | 9.39 | – | {PUBLISHED_NOTE} |"
    assert table[6] == f"| VadCLIP (paper) | 88.02 | – | 6.68 | – | {PUBLISHED_NOTE} |"
    xd = accuracy_table({}, "xd")
    assert "| CPL-VAD (paper) | – | 88.53 | 33.53 | – |" in xd and "| VadCLIP (paper) | – | 84.51 | 24.70 | – |" in xd


def test_edge_table_ratios_to_one_camera() -> None:
    rows = edge_table(results()).splitlines()
    assert rows[2].startswith("| tiny | 1 | 40.00 | 1.00 | 160.00 | – | 20.00 |")
    assert rows[3].startswith("| tiny | 2 | 60.00 | 1.50 | 120.00 | – | 15.00 |")


def test_soak_table_and_largest_real_time() -> None:
    rows = soak_table(results()).splitlines()
    assert rows[0] == ("| CLIP | bundle | precision | cameras | RSS MB/min | dropped % | max queue | "
                       "snippets/s scored | snippets/s produced | real time |")
    assert rows[2] == "| tiny | random weights | fp32 | 1 | 0.25 | 0.00 | 2 | 0.75 | 0.78 | yes |"
    assert rows[3] == "| tiny | random weights | fp32 | 2 | 0.50 | 12.50 | 4 | 1.50 | 1.56 | no |"
    assert rows[4].startswith("| random | ucf-random | int8 (head) | 1 |")  # only the head passed its INT8 gate
    lines = soak_lines(results())
    assert "Largest real-time camera count: tiny fp32 **1**, random int8 (ucf-random) **0**" in lines
    assert soak_lines({}) == ["not measured in this run"]
    summary = dict(summary_rows(results()))
    assert summary["soak tiny fp32"] == "1 camera(s) in real time, RSS 0.25 MB/min"
    assert summary["soak random int8 (ucf-random)"] == "no camera count held real time"


def test_summary_rows_pick_the_headline_figures() -> None:
    rows = dict(summary_rows(results()))
    assert rows["ucf accuracy"].startswith("3 models trained and scored (pipeline check, not a ranking")
    assert "ucf CPL-VAD teacher" not in rows  # a quick run ranks no method
    full = dict(summary_rows(results() | {"mode": "full"}))
    assert full["ucf CPL-VAD teacher"] == "AUC 80.50, mAP avg 5.00 (corrected 5.40)"
    assert rows["train CPL-VAD teacher ucf"] == "15.0 s/epoch, peak RSS 900 MB"
    assert rows["CLIP ViT-B/16 torch eager b8"] == "2.00 images/s"
    assert rows["CLIP ViT-B/16 onnxruntime fp32 b8"] == "3.00 images/s (x1.50 torch eager)"
    assert rows["INT8 u8s8 head b8"] == "x2.00 vs fp32"
    assert rows["edge tiny CLIP, 2 cam"] == "60.0 encoded frames/s"
    assert rows["alert latency"] == "2.5 snippets (2.5 s of video, 3.2 s onset to MQTT in real time), hits 2/3"
    no_hit = dict(summary_rows({"alert": {"anomalies": 3, "hits": 0, "events_total": 1}}))
    assert no_hit["alert latency"] == "no alert on the 3 held-out anomalies (1 events)"
    assert rows["ViT-B/16 vs GEMM peak"] == "105.6 % of 100 GFLOP/s"


def test_write_report_writes_markdown_and_plots(tmp_path) -> None:
    table = write_report(results(), tmp_path)
    report = (tmp_path / "report.md").read_text()
    for name in ("pr_roc_ucf.png", "timelines_ucf.png", "edge_fps.png"):
        assert (tmp_path / name).stat().st_size > 1000
        assert f"]({name})" in report
    assert PUBLISHED_NOTE in report
    assert "| random | onnxruntime fp32 | 8 | 3.00 | 1.50 |" in report  # ratio to torch eager, same batch
    assert "- calibrate ucf: exit code 1" in report
    assert "## Soak (bench/soak.py)" in report and "| tiny | random weights | fp32 | 1 | 0.25 |" in report
    assert "FAILED stages: calibrate ucf" in table
    assert "Full mode's expected time: ~5 h." in report
    assert "*quick mode*: small training set" in report and "they do not rank the methods" in report


def test_write_report_with_nothing_measured(tmp_path) -> None:
    table = write_report({"mode": "smoke", "steps": []}, tmp_path)
    assert "not measured in this run" in (tmp_path / "report.md").read_text()
    assert "CPL-VAD Edge bench (smoke" in table


def test_replace_block_keeps_the_rest_of_the_readme() -> None:
    text = f"# Title\nintro\n{START}\nold figures\n{END}\nafter\n"
    assert replace_block(text, "new") == f"# Title\nintro\n{START}\nnew\n{END}\nafter\n"
    assert replace_block(replace_block(text, "new"), "new") == replace_block(text, "new")  # idempotent


def test_replace_block_appends_markers_when_absent() -> None:
    assert replace_block("# Title\n", "figures") == f"# Title\n\n## Results\n\n{START}\nfigures\n{END}\n"


def test_replace_block_refuses_two_blocks() -> None:
    with pytest.raises(ValueError, match="more than one results block"):
        replace_block(f"{START}a{END}{START}b{END}", "x")


def test_update_readme(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{START}\n{END}\nbottom\n")
    update_readme(readme, results(), "bench/results/x")
    text = readme.read_text()
    assert text.startswith("top\n") and text.endswith(f"{END}\nbottom\n")
    assert "[bench/results/x/report.md](bench/results/x/report.md)" in text
    assert "| CPL-VAD teacher |" not in text and "do not rank the methods" in text  # quick: no ranking table
    update_readme(readme, results() | {"mode": "full"}, "bench/results/x")
    assert "| CPL-VAD teacher | 80.50 |" in readme.read_text()


def test_accuracy_row_scales_fractions_to_percent() -> None:
    m = {"auc": 0.8824, "ap": 0.5, "map": {"avg": 9.39}, "map_corrected": {"avg": 10.1}}
    assert accuracy_row(m) == pytest.approx({"auc": 88.24, "ap": 50.0, "map_avg": 9.39, "map_corrected_avg": 10.1})


def test_downsample_curve_keeps_the_ends() -> None:
    x, y = np.linspace(0, 1, 1001), np.linspace(1, 0, 1001)
    xs, ys = downsample_curve(x, y, points=11)
    assert len(xs) == 11 and xs[0] == 0.0 and xs[-1] == 1.0 and ys[-1] == 0.0
    assert xs[5] == pytest.approx(0.5)
    assert downsample_curve(np.array([0.0, 1.0]), np.array([0.0, 1.0]), points=200) == ([0.0, 1.0], [0.0, 1.0])


def test_even_pick() -> None:
    from bench.run import even_pick

    assert even_pick([10, 11, 12, 13, 14], 3) == [10, 12, 14]
    assert even_pick([1, 2], 5) == [1, 2]


def test_subset_test_cuts_the_ground_truth(tmp_path) -> None:
    from bench.run import subset_test
    from train.data.release import load_ground_truth, save_ground_truth

    data = tmp_path / "data"
    (data / "features").mkdir(parents=True)
    videos = [("Abuse001_x264", "Abuse", 2, [[16, 32]]), ("Normal001_x264", "Normal", 3, None),
              ("Arson001_x264", "Arson", 1, [[0, 8]]), ("Normal002_x264", "Normal", 2, None)]
    frames, segments, labels = [], [], []
    rows = ["path,label"]
    for name, label, n, seg in videos:
        np.save(data / "features" / f"{name}__5.npy", np.zeros((n, 512), np.float32))
        rows.append(f"features/{name}__5.npy,{label}")
        truth = np.zeros(16 * n, np.float32)
        for start, end in seg or []:
            truth[start:end] = 1
        frames.append(truth)
        segments.append(seg or [[0, 16 * n]])
        labels.append([label] if seg else ["A"])
    (data / "test.csv").write_text("\n".join(rows) + "\n")
    (data / "train.csv").write_text("\n".join(rows) + "\n")
    save_ground_truth(data, np.concatenate(frames), segments, labels)

    sub = load_ground_truth(subset_test(data, tmp_path / "sub", anomalous=1, normal=1))
    assert sub.names == ["Abuse001_x264", "Normal001_x264"]
    assert sub.num_snippets == [2, 3]
    np.testing.assert_array_equal(sub.gt_frames, np.concatenate([frames[0], frames[1]]))
    assert [s.tolist() for s in sub.segments] == [[[16, 32]], [[0, 48]]]
    assert sub.seg_labels == [["Abuse"], ["A"]]


def test_named_blocks_are_replaced_and_must_exist() -> None:
    from bench.report import markers

    start, end = markers("accuracy")
    text = f"a\n{start}\nold\n{end}\nb\n"
    assert replace_block(text, "new", "accuracy") == f"a\n{start}\nnew\n{end}\nb\n"
    with pytest.raises(ValueError, match="no <!-- soak:start -->"):
        replace_block(text, "x", "soak")
