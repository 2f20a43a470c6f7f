from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.configfile import ConfigError, load_config
from train.training.baseline import DEFAULT_CONFIG, MILConfig, MILHead, main, mil_loss
from train.training.losses import topk_count, topk_mean
from train.data.synth import generate


def test_topk_by_hand() -> None:
    """The MIL baseline's top-k rule (train.training.losses, shared with CPL-VAD)."""
    def top(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return topk_mean(x, mask, topk_count(mask.sum(-1)))

    x = torch.tensor([[1.0, 5.0, 3.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, True, False]])  # the 9 is padding
    assert topk_count(mask.sum(-1)).tolist() == [1]
    assert top(x, mask).tolist() == [5.0]
    long = torch.arange(20.0)[None]  # k = 20 // 16 + 1 = 2 -> mean(19, 18)
    assert top(long, torch.ones(1, 20, dtype=torch.bool)).tolist() == [18.5]
    per_class = torch.stack([x[0], -x[0]], -1)[None]  # (1, 5, 2)
    assert top(per_class, mask).tolist() == [[5.0, -1.0]]


def test_mil_loss_by_hand() -> None:
    logits = torch.zeros(2, 4)  # p = 0.5 everywhere: BCE = log 2 for either label
    class_logits = torch.zeros(2, 4, 2)  # uniform over 2 anomaly classes: CE = log 2
    mask = torch.ones(2, 4, dtype=torch.bool)
    multi_hot = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])  # a normal video, an anomalous one
    loss, parts = mil_loss(logits, class_logits, mask, multi_hot)
    assert parts["bce"] == pytest.approx(np.log(2)) and parts["ce"] == pytest.approx(np.log(2))
    assert float(loss) == pytest.approx(2 * np.log(2))
    _, parts = mil_loss(logits[:1], class_logits[:1], mask[:1], multi_hot[:1])
    assert "ce" not in parts  # no anomalous video, no class loss


def test_class_scores_are_a_distribution() -> None:
    torch.manual_seed(0)
    p, classes = MILHead(14, "linear").eval().scores(torch.randn(7, 512))
    assert p.shape == (7,) and classes.shape == (7, 14)
    np.testing.assert_allclose(classes.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(classes[:, 0], 1 - p, rtol=1e-5)


def test_config_file_and_bad_key() -> None:
    assert load_config(MILConfig, DEFAULT_CONFIG) == MILConfig()
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(MILConfig, DEFAULT_CONFIG, ["epoch=3"])


def test_short_run_beats_chance(tmp_path: Path) -> None:
    data = tmp_path / "ucf"
    generate("ucf", data, seed=1, scale=0.03)
    main(["--data", str(data), "--out", str(tmp_path / "run"), "--set", "seed=1"])

    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["auc"] > 0.6
    assert set(metrics["map"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "avg"}
    assert "seed: 1" in (tmp_path / "run/config.yaml").read_text()
    scores = np.load(tmp_path / "run/scores.npz")
    assert len([k for k in scores.files if k.startswith("binary/")]) == 290
    assert scores["classes/Abuse028_x264"].shape == (88, 14)
