from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from train.training.losses import (bce_topk_loss, class_anomaly_logit, focal_loss, mil_align_loss, pool_to_levels,
                          topk_count, topk_mean, total_loss)
from train.models.cplvad import CPLVAD, CPLVADConfig, CPLVADOutput
from train.paths import public_file

LN3, LN4 = math.log(3), math.log(4)


# --- hand-computed cases


def test_topk_count_rule() -> None:
    assert topk_count(torch.tensor([1, 15, 16, 33])).tolist() == [1, 1, 2, 3]


def test_topk_mean_over_valid_time_only() -> None:
    x = torch.tensor([[3.0, 1.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert topk_mean(x, mask, torch.tensor([2])).item() == pytest.approx(2.5)  # (3 + 2) / 2; 9 is padding
    per_class = torch.tensor([[[1.0, 5.0], [4.0, 0.0], [2.0, 2.0]]])  # (B=1, T=3, M=2)
    got = topk_mean(per_class, torch.ones(1, 3, dtype=torch.bool), torch.tensor([2]))
    assert got.tolist() == [[3.0, 3.5]]


def test_bce_on_top_k_mean_probability() -> None:
    logits = torch.tensor([[LN3, 0.0], [0.0, -LN3]])  # probabilities [.75, .5] and [.5, .25]
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss = bce_topk_loss(logits, mask, torch.tensor([1.0, 0.0]))  # k = 1: top-1 = .75 and .5
    assert loss.item() == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2, rel=1e-5)


def test_mil_align_softmax_against_normalised_multi_hot() -> None:
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]])  # (B=1, T=2, M=3), k = 1: max over time
    labels = torch.tensor([[0.0, 1.0, 1.0]])  # two classes -> target [0, .5, .5]
    loss = mil_align_loss(logits, torch.ones(1, 2, dtype=torch.bool), labels)
    video = [1.0, 1.0, 2.0]
    lse = math.log(sum(math.exp(v) for v in video))
    assert loss.item() == pytest.approx(-(0.5 * (1.0 - lse) + 0.5 * (2.0 - lse)), rel=1e-5)


def test_focal_loss_hand_cases() -> None:
    one = lambda logit, target: focal_loss(torch.tensor([logit]), torch.tensor([target]),  # noqa: E731
                                           torch.tensor([True])).item()
    assert one(LN4, 1.0) == pytest.approx(0.25 * 0.2**2 * -math.log(0.8), rel=1e-5)  # p = .8
    assert one(LN4, 0.0) == pytest.approx(0.75 * 0.8**2 * -math.log(0.2), rel=1e-5)
    soft = 0.5 * 0.5**2 * -(0.5 * math.log(0.8) + 0.5 * math.log(0.2))  # p_t = .5, alpha_t = .5
    assert one(LN4, 0.5) == pytest.approx(soft, rel=1e-5)
    masked = focal_loss(torch.tensor([LN4, LN4, 100.0]), torch.tensor([1.0, 0.0, 0.3]),
                        torch.tensor([True, True, False]))
    assert masked.item() == pytest.approx((one(LN4, 1.0) + one(LN4, 0.0)) / 2, rel=1e-5)


def test_class_anomaly_logit_is_logit_of_one_minus_normal() -> None:
    z = torch.tensor([0.0, math.log(2), LN3])  # softmax = [1/6, 2/6, 3/6] -> P(anomaly) = 5/6
    assert class_anomaly_logit(z).item() == pytest.approx(math.log(5), rel=1e-6)


def test_pool_to_levels_follows_the_pyramid() -> None:
    levels = pool_to_levels(torch.tensor([[0.0, 0, 1, 0, 0, 0, 0, 0.5]]), 3)
    assert [lv[0].tolist() for lv in levels[1:]] == [[0, 1, 0, 0.5], [1, 1]]
    assert [lv.shape[1] for lv in pool_to_levels(torch.zeros(1, 11), 4)] == [11, 6, 3, 2]


# --- total_loss and the ablation modes


def _output(seed: int = 0) -> CPLVADOutput:
    g = torch.Generator().manual_seed(seed)
    masks, binary, classes = [], [], []
    for n, valid in zip([8, 4, 2], [5, 3, 2]):  # second video: 5 snippets, 3 and 2 at the coarser levels
        m = torch.ones(2, n, dtype=torch.bool)
        m[1, valid:] = False
        masks.append(m)
        binary.append(torch.randn(2, n, generator=g))
        classes.append(torch.randn(2, n, 3, generator=g))
    return CPLVADOutput(binary, classes, masks)


BATCH = {"labels": torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])}  # anomalous, normal


def _pseudo(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"b": torch.rand(2, 8, generator=g), "c": torch.rand(2, 8, generator=g)}


def test_stage_one_is_bce_plus_nce() -> None:
    out = _output()
    total, parts = total_loss(out, BATCH, stage=1, pseudo=_pseudo(1))
    assert set(parts) == {"bce", "nce", "total"}
    anomalous = torch.tensor([1.0, 0.0])
    bce = sum(bce_topk_loss(b, m, anomalous) for b, m in zip(out.binary_logits, out.masks)) / 3
    assert parts["bce"] == pytest.approx(bce.item())
    assert total.item() == pytest.approx(parts["bce"] + parts["nce"])


def test_loss_weights_scale_their_part_of_the_total() -> None:
    out = _output()
    _, parts = total_loss(out, BATCH, stage=2, pseudo=_pseudo(1), mode="cross")
    total, _ = total_loss(out, BATCH, stage=2, pseudo=_pseudo(1), mode="cross",
                          weights={"nce": 0.0, "focal_b": 2.0})
    assert total.item() == pytest.approx(parts["bce"] + 2 * parts["focal_b"] + parts["focal_c"], rel=1e-5)


@pytest.mark.parametrize("mode, teach_b, teach_c", [
    ("none", None, None), ("b2c", None, "b"), ("c2b", "c", None), ("cross", "c", "b"), ("self", "b", "c")])
def test_modes_use_the_right_pseudo_labels(mode: str, teach_b: str | None, teach_c: str | None) -> None:
    out, pseudo = _output(), _pseudo(1)
    _, parts = total_loss(out, BATCH, stage=2, pseudo=pseudo, mode=mode)
    keep = torch.tensor([[1.0], [0.0]]) * out.masks[0]  # the normal video's labels are zero
    levels = {k: pool_to_levels(v * keep, 3) for k, v in pseudo.items()}
    if teach_b is None:
        assert "focal_b" not in parts
    else:
        want = sum(focal_loss(b, levels[teach_b][i], m) for i, (b, m) in
                   enumerate(zip(out.binary_logits, out.masks))) / 3
        assert parts["focal_b"] == pytest.approx(want.item(), rel=1e-6)
    if teach_c is None:
        assert "focal_c" not in parts
    else:
        want = sum(focal_loss(class_anomaly_logit(c), levels[teach_c][i], m) for i, (c, m) in
                   enumerate(zip(out.class_logits, out.masks))) / 3
        assert parts["focal_c"] == pytest.approx(want.item(), rel=1e-6)


def test_normal_videos_and_padding_ignore_pseudo_labels() -> None:
    out, pseudo = _output(), _pseudo(1)
    noisy = {k: v.clone() for k, v in pseudo.items()}
    for v in noisy.values():
        v[1] = 1.0  # the normal video: its snippet labels are known zeros
    a, _ = total_loss(out, BATCH, stage=2, pseudo=pseudo, mode="cross")
    b, _ = total_loss(out, BATCH, stage=2, pseudo=noisy, mode="cross")
    assert a.item() == pytest.approx(b.item(), rel=1e-6)

    both_anomalous = {"labels": torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])}
    for key, v in noisy.items():
        v[1, :5] = pseudo[key][1, :5]  # video 1: valid part as before, 1.0 in its padding (5..7)
    a, _ = total_loss(out, both_anomalous, stage=2, pseudo=pseudo, mode="cross")
    b, _ = total_loss(out, both_anomalous, stage=2, pseudo=noisy, mode="cross")
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="mode='both'"):
        total_loss(_output(), BATCH, stage=2, pseudo=_pseudo(1), mode="both")
    with pytest.raises(ValueError, match="needs pseudo labels"):
        total_loss(_output(), BATCH, stage=2, mode="cross")
    with pytest.raises(ValueError, match="stage=3"):
        total_loss(_output(), BATCH, stage=3)


# --- a short training run on a toy problem built from real CLIP class directions


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread than on contended cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _toy_batch(directions: np.ndarray, rng: np.random.Generator, B: int = 8, T: int = 32):
    """Half normal videos (noise); the others add their class direction (1..3) on a 4-6 snippet segment."""
    x = rng.normal(0, 0.05, (B, T, 512)).astype(np.float32)
    labels = np.zeros((B, len(directions)), np.float32)
    snippet = np.zeros((B, T), np.float32)
    lengths = rng.integers(T // 2, T + 1, B)
    for b in range(B):
        cls = 0 if b % 2 == 0 else 1 + (b // 2) % (len(directions) - 1)
        labels[b, cls] = 1
        if cls:
            start = rng.integers(0, lengths[b] - 6)
            stop = start + rng.integers(4, 7)
            x[b, start:stop] += 2.0 * directions[cls]
            snippet[b, start:stop] = 1
    mask = np.arange(T)[None] < lengths[:, None]
    return torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(labels), snippet, mask


def test_short_training_lowers_the_loss_and_beats_chance(one_thread: None) -> None:
    emb = np.load(public_file("text_embeddings", "xd-prompt.npy"))[:4]  # normal, fighting, shooting, riot
    directions = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = CPLVAD(CPLVADConfig.tiny(class_names=("normal", "fighting", "shooting", "riot"), drop_path=0.0))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(50):
        x, mask, labels, _, _ = _toy_batch(directions, rng)
        loss, _ = total_loss(model(x, mask), {"labels": labels}, stage=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])

    model.eval()
    x, mask, labels, snippet, valid = _toy_batch(directions, np.random.default_rng(1), B=16)
    pred = model.predict(x, mask)
    auc = roc_auc_score(snippet[valid], pred.binary.numpy()[valid])
    assert auc > 0.9  # chance: 0.5

    pseudo = {"b": (pred.binary > 0.5).float(), "c": 1 - pred.classes[..., 0]}
    model.train()
    loss, parts = total_loss(model(x, mask), {"labels": labels}, stage=2, pseudo=pseudo, mode="cross")
    loss.backward()
    assert {"focal_b", "focal_c"} <= set(parts) and math.isfinite(loss.item())
    assert model.prompts is not None and model.prompts.ctx.grad is not None
