from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.ringbuffer import FeatureRing, window_index
from train.data.release import save_ground_truth
from train.training.distill import (DistillConfig, DistillLossConfig, class_kl, cut_window, distill_loss, plan_windows,
                           soft_bce)
from train.data.labels import UCF
from train.models.student import Student, StudentConfig, StudentOutput

# ---------------------------------------------------------------------------------------------------------------
# A small dataset in the release layout and a tiny teacher trained on it by train.training.teacher (shared with test_export)

CLASSES = ("Abuse", "Fighting", "Explosion")
WINDOW = 16


def _video(rng: np.random.Generator, n: int, segment: tuple[int, int] | None, direction: np.ndarray) -> np.ndarray:
    x = rng.normal(0.0, 0.3, (n, 512)).astype(np.float32)
    if segment is not None:
        x[segment[0]:segment[1]] += 1.5 * direction
    return x


def write_dataset(root: Path, seed: int = 0) -> Path:
    """12 training videos (2 crops) and 6 test videos of UCF labels with a planted anomaly per anomalous video."""
    rng = np.random.default_rng(seed)
    directions = {c: d / np.linalg.norm(d) for c, d in zip(CLASSES, rng.normal(size=(3, 512)))}
    (root / "features").mkdir(parents=True)
    rows = []
    for i in range(12):
        label = "Normal" if i % 2 == 0 else CLASSES[i // 2 % 3]
        n = int(rng.integers(20, 90))
        start = int(rng.integers(0, n - 10))
        for crop in range(2):
            x = _video(rng, n, None if label == "Normal" else (start, start + 10),
                       directions.get(label, np.zeros(512)))
            np.save(root / f"features/train{i:02d}__{crop}.npy", x)
            rows.append(f"features/train{i:02d}__{crop}.npy,{label}")
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    rows, frames, segments, labels = [], [], [], []
    for i in range(6):
        label = "Normal" if i % 2 == 0 else CLASSES[i // 2 % 3]
        n = int(rng.integers(20, 70))
        start = int(rng.integers(0, n - 12))
        segment = None if label == "Normal" else (start, start + 12)
        np.save(root / f"features/test{i}__0.npy", _video(rng, n, segment, directions.get(label, np.zeros(512))))
        rows.append(f"features/test{i}__0.npy,{label}")
        gt = np.zeros(16 * n, np.float32)
        if segment is None:
            segments.append([[0, 16 * n]])
            labels.append(["A"])
        else:
            gt[16 * segment[0]:16 * segment[1]] = 1.0
            segments.append([[16 * segment[0], 16 * segment[1]]])
            labels.append([label])
        frames.append(gt)
    (root / "test.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    save_ground_truth(root, np.concatenate(frames), segments, labels)
    return root


def build_student_run(root: Path) -> tuple[Path, Path]:
    """(teacher run, student run) under ``root``, built once per pytest run (test_export reuses them)."""
    from train.evaluation.stream import evaluate_run
    from train.training.distill import run as distill
    from train.training.teacher import TrainConfig, run as train_teacher

    teacher, student = root / "teacher", root / "student"
    if (student / "student.pt").is_file():
        return teacher, student
    data = write_dataset(root / "data")
    train_teacher(TrainConfig.model_validate({
        "data": {"dir": str(data), "length": 32},
        "model": {"d_model": 16, "num_heads": 2, "num_levels": 3, "window": 4, "num_stem_blocks": 1,
                  "num_ctx": 2, "text_source": "tiny", "drop_path": 0.0},
        "optim": {"lr": 3e-3, "batch_size": 4, "epochs_stage1": 2, "epochs_stage2": 1, "lr_step": 0},
        "out": str(teacher), "device": "cpu", "threads": 1, "plot_videos": 0}))
    distill(DistillConfig.model_validate({
        "teacher": str(teacher), "out": str(student), "device": "cpu", "threads": 1,
        "student": {"d_model": 32, "num_heads": 2, "num_levels": 2, "window": WINDOW, "attn_span": 4},
        "optim": {"lr": 3e-3, "batch_size": 8, "epochs": 6}}))
    evaluate_run(student)  # what `cplvad distill` chains after the distillation
    return teacher, student


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    return build_student_run(tmp_path_factory.getbasetemp() / "h8_runs")


# ---------------------------------------------------------------------------------------------------------------
# Pure pieces


def test_soft_bce_hand_computed() -> None:
    logits = torch.zeros(1, 2, 3)  # p = 0.5 everywhere: BCE = log 2 whatever the target
    target = torch.tensor([[0.0, 1.0, 0.3]])
    mask = torch.tensor([[True, True, False]])
    assert soft_bce(logits, target, mask).item() == pytest.approx(np.log(2), abs=1e-6)
    logits = torch.tensor([[[0.0, 0.0, 100.0]]])  # the padded row is ignored
    target = torch.tensor([[1.0, 1.0, 0.0]])
    assert soft_bce(logits, target, torch.tensor([[True, True, False]])).item() == pytest.approx(np.log(2), abs=1e-6)


def test_class_kl_zero_at_match_and_hand_computed() -> None:
    p = torch.tensor([[[0.7, 0.2, 0.1]]])  # (B=1, T=1, M=3)
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert class_kl(p.log()[:, None], p, mask).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 1, 1, 3)
    expected = float((p * (p / (1 / 3)).log()).sum())
    assert class_kl(uniform, p, mask).item() == pytest.approx(expected, abs=1e-6)


def test_cut_window_pads_after_the_data() -> None:
    x = np.arange(5, dtype=np.float32)[:, None]
    w, m = cut_window(x, 3, 4)
    assert w[:, 0].tolist() == [3, 4, 0, 0] and m.tolist() == [True, True, False, False]


def test_plan_windows_counts_placement_and_labels() -> None:
    rng = np.random.default_rng(0)
    lengths, anomalous, peaks = [100, 40, 200], [False, True, True], [[0], [30], [150, 10]]
    plan = plan_windows(lengths, anomalous, peaks, 32, peak_fraction=1.0, rng=rng)
    assert [sum(s.video == v for s in plan) for v in range(3)] == [3, 1, 6]  # round(N / W), at least 1
    for s in plan:
        assert 0 <= s.start <= max(lengths[s.video] - 32, 0)
        if anomalous[s.video]:
            assert s.labelled and s.start <= peaks[s.video][s.crop] < s.start + 32
        else:
            assert s.labelled
    none = plan_windows(lengths, anomalous, peaks, 32, peak_fraction=0.0, rng=rng)
    assert [s.labelled for s in none] == [not anomalous[s.video] for s in none]
    thrice = plan_windows(lengths, anomalous, peaks, 32, peak_fraction=1.0, rng=rng, repeat=3)
    assert [sum(s.video == v for s in thrice) for v in range(3)] == [9, 3, 18]


def test_distill_loss_uses_video_terms_only_on_labelled_windows() -> None:
    torch.manual_seed(0)
    B, L, T, M = 3, 2, 8, 4
    out = StudentOutput(torch.randn(B, L, T), torch.randn(B, L, T, M), torch.ones(B, T, dtype=torch.bool))
    batch = {"mask": torch.ones(B, T, dtype=torch.bool), "teacher_b": torch.rand(B, T),
             "teacher_c": torch.softmax(torch.randn(B, T, M), -1), "labels": torch.eye(M)[[0, 1, 2]],
             "labelled": torch.tensor([False, False, False])}
    total, parts = distill_loss(out, batch, DistillLossConfig())
    assert set(parts) == {"soft_bce", "kl", "total"}
    batch["labelled"] = torch.tensor([True, False, True])
    total, parts = distill_loss(out, batch, DistillLossConfig(kl=0.0))
    assert set(parts) == {"soft_bce", "kl", "video_bce", "mil_align", "total"}
    assert parts["total"] == pytest.approx(parts["soft_bce"] + parts["video_bce"] + parts["mil_align"], rel=1e-5)


def test_config_rejects_unknown_keys() -> None:
    from edge.configfile import ConfigError, load_config

    with pytest.raises(ConfigError, match="optim.epochs"):
        load_config(DistillConfig, None, ["optim.epoch=3"])
    cfg = load_config(DistillConfig, Path(__file__).parents[1] / "configs/distill/default.yaml", [])
    assert cfg.student.window == 64


# ---------------------------------------------------------------------------------------------------------------
# The whole distillation on the small dataset


def test_distillation_lowers_its_loss(runs: tuple[Path, Path]) -> None:
    _, student_run = runs
    metrics = json.loads((student_run / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) == 6
    assert history[-1]["total"] < history[0]["total"]
    for row in ("teacher", "student_offline", "student_streaming"):
        assert 0.0 <= metrics[row]["auc"] <= 1.0 and metrics[row]["map"] is not None
    events, cold = metrics["student_streaming"]["events"], metrics["student_streaming"]["events_no_warmup"]
    assert "f1" in events and events["false_alarms_per_hour"] <= cold["false_alarms_per_hour"] + 1e-9
    assert events["normal_hours"] > 0 and events["segments_alerted"] <= events["segments"] and events["warmup"] >= 0
    ckpt = torch.load(student_run / "student.pt", weights_only=True)
    assert ckpt["dataset"] == "ucf" and tuple(ckpt["classes"]) == UCF.names


def test_int8_streaming_row_runs_the_quantized_head(runs: tuple[Path, Path]) -> None:
    """``cplvad eval --int8``: the head exported and quantized (Q/DQ nodes in the file), streamed with the float
    student's smoother; on this data its detection stays close to the float streaming row."""
    import onnx

    from train.evaluation.stream import evaluate_run

    _, student_run = runs
    result = evaluate_run(student_run, teacher=False, int8="u8s8")
    int8, float_row = result["student_int8_streaming"], result["student_streaming"]
    ops = {node.op_type for node in onnx.load(str(student_run / "int8" / "head.u8s8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8["flavour"] == "u8s8" and int8["events"]["theta_on"] == float_row["events"]["theta_on"]
    assert abs(int8["auc"] - float_row["auc"]) < 0.05 and abs(int8["ap"] - float_row["ap"]) < 0.1
    assert "student_int8_streaming" in json.loads((student_run / "metrics.json").read_text())


def test_distillation_fits_the_teacher_targets(runs: tuple[Path, Path]) -> None:
    """With the soft targets alone, the student's distance to the teacher falls on a fixed set of windows."""
    from train.data.release import read_split
    from train.training.distill import WindowDataset, load_teacher, student_text, teacher_targets, train_student

    teacher_run, student_run = runs
    teacher = load_teacher(teacher_run)
    split = read_split(student_run.parent / "data/train.csv")
    dataset = WindowDataset(split, teacher_targets(teacher, split, 1, torch.device("cpu")), WINDOW, 0.5, seed=0)
    batch = {k: torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in dataset[0]}
    text = torch.from_numpy(student_text(teacher.text, 2).embeddings)
    cfg = DistillConfig.model_validate({"loss": {"video_bce": 0.0, "mil_align": 0.0},
                                        "optim": {"lr": 3e-3, "batch_size": 8, "epochs": 4}})
    torch.manual_seed(0)
    student = Student(StudentConfig.tiny(window=WINDOW, num_levels=2, dropout=0.0))

    def soft_loss() -> float:
        with torch.no_grad():
            return distill_loss(student.eval().logits(batch["features"], batch["mask"], text), batch, cfg.loss)[0].item()

    before = soft_loss()
    train_student(student, dataset, text, cfg, torch.device("cpu"))
    assert soft_loss() < 0.8 * before


def test_streaming_batched_equals_the_device_loop(runs: tuple[Path, Path]) -> None:
    from train.evaluation.stream import stream_batched, stream_loop
    from train.models.text import load_text_embeddings

    _, student_run = runs
    student, _ = Student.load_run(student_run)
    text = torch.from_numpy(load_text_embeddings(student_run / "text_embeddings.npz").embeddings)
    feats = np.load(student_run.parent / "data/features/test1__0.npy")
    n = feats.shape[0]
    assert n > WINDOW  # both the filling and the sliding phase
    loop = stream_loop(student, feats, text)
    batched = stream_batched(student, feats, text, batch=7)
    np.testing.assert_allclose(batched.levels, loop.levels, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batched.classes, loop.classes, rtol=0, atol=1e-6)
    # the gather layout is the ring buffer's
    index, mask, newest = window_index(n, WINDOW)
    ring = FeatureRing(WINDOW, 512)
    padded = np.concatenate([feats, np.zeros((1, 512), np.float32)])
    for t in (0, WINDOW - 1, n - 1):
        ring.reset()
        for f in feats[: t + 1]:
            ring.push(f)
        x, m = ring.window()
        np.testing.assert_array_equal(padded[index[t]], x)
        np.testing.assert_array_equal(mask[t], m)
        assert newest[t] == len(ring) - 1


def test_stream_windows_hand_computed() -> None:
    index, mask, newest = window_index(4, 3)
    assert index.tolist() == [[0, 4, 4], [0, 1, 4], [0, 1, 2], [1, 2, 3]]
    assert mask.sum(1).tolist() == [1, 2, 3, 3] and newest.tolist() == [0, 1, 2, 2]
