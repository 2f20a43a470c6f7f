from __future__ import annotations

import math

import pytest
import torch

from train.models.cplvad import (CPLVAD, TEXT_ENCODER_PREFIX, CPLVADConfig, masked_max_pool, sinusoid_encoding,
                         upsample_levels, window_attention)


@pytest.fixture(scope="module")
def model() -> CPLVAD:
    torch.manual_seed(0)
    return CPLVAD(CPLVADConfig.tiny()).eval()


def _inputs(lengths: list[int], T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), T, 512, generator=g)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return x, mask


# --- small pure pieces, hand-computed cases


def test_upsample_levels_repeats_by_stride() -> None:
    levels = [torch.tensor([[1.0, 2, 3, 4, 5]]), torch.tensor([[6.0, 7, 8]]), torch.tensor([[9.0, 10]])]
    up = upsample_levels(levels, 5)
    assert up.shape == (1, 3, 5)
    assert up[0].tolist() == [[1, 2, 3, 4, 5], [6, 6, 7, 7, 8], [9, 9, 9, 9, 10]]


def test_masked_max_pool_ignores_padding() -> None:
    x = torch.tensor([[-3.0, -1.0, -2.0, 100.0]])[..., None]  # position 3 is padding
    mask = torch.tensor([[True, True, True, False]])
    y, m = masked_max_pool(x, mask)
    assert y[0, :, 0].tolist() == [-1.0, -1.0]  # windows {0,1} and {1,2,(3)}
    assert m.tolist() == [[True, True]]


def test_sinusoid_encoding_values() -> None:
    pe = sinusoid_encoding(3, 4)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    expected = [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]  # frequencies 1 and 1/100
    torch.testing.assert_close(pe[2], torch.tensor(expected))


def test_window_attention_sees_only_its_window_and_valid_keys() -> None:
    T, r = 9, 2
    q = torch.zeros(1, 1, T, 1)  # equal scores: the output is the mean of the visible values
    v = torch.arange(T, dtype=torch.float32).view(1, 1, T, 1)
    mask = torch.ones(1, T, dtype=torch.bool)
    mask[0, 8] = False
    y = window_attention(q, q, v, mask, r)[0, 0, :, 0]
    torch.testing.assert_close(y[0], torch.tensor(1.0))  # keys 0, 1, 2
    torch.testing.assert_close(y[4], torch.tensor(4.0))  # keys 2..6
    torch.testing.assert_close(y[7], torch.tensor(6.0))  # keys 5, 6, 7 (8 is padding)
    y_global = window_attention(q, q, v, mask, None)[0, 0, :, 0]
    torch.testing.assert_close(y_global[:8], torch.full((8,), 3.5))  # mean of 0..7


# --- the model


@pytest.mark.parametrize("T", [32, 20, 7])
def test_output_shapes_at_every_level(model: CPLVAD, T: int) -> None:
    x, mask = _inputs([T, T], T)
    out = model(x, mask)
    M, L = model.config.num_classes, model.config.num_levels
    assert len(out.binary_logits) == len(out.class_logits) == len(out.masks) == L
    for level, (b, c, m) in enumerate(zip(out.binary_logits, out.class_logits, out.masks)):
        n = math.ceil(T / 2**level)
        assert b.shape == (2, n) and c.shape == (2, n, M) and m.shape == (2, n)
        assert torch.isfinite(b).all() and torch.isfinite(c).all()


def test_padding_never_changes_valid_outputs(model: CPLVAD) -> None:
    x, mask = _inputs([32, 13, 6], 32)
    x[~mask] = 1e3  # garbage in the padding
    with torch.no_grad():
        batched = model(x, mask)
        for i, n in enumerate([32, 13, 6]):
            alone = model(x[i: i + 1, :n], mask[i: i + 1, :n])
            for level in range(model.config.num_levels):
                valid = alone.masks[level][0]
                assert batched.masks[level][i, : valid.shape[0]].equal(valid)
                torch.testing.assert_close(batched.binary_logits[level][i, : valid.shape[0]][valid],
                                           alone.binary_logits[level][0][valid], atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(batched.class_logits[level][i, : valid.shape[0]][valid],
                                           alone.class_logits[level][0][valid], atol=1e-5, rtol=1e-4)


def test_binary_head_starts_at_the_prior() -> None:
    fresh = CPLVAD(CPLVADConfig.tiny(text_source=None))
    assert fresh.binary_head.out.conv.bias.item() == pytest.approx(-math.log(99))


def test_predict_at_the_input_rate(model: CPLVAD) -> None:
    x, mask = _inputs([20, 11], 20)
    pred = model.predict(x, mask)
    out = model(x, mask)
    assert pred.binary.shape == (2, 20) and pred.classes.shape == (2, 20, 4)
    assert pred.levels.shape == (2, 3, 20)
    torch.testing.assert_close(pred.classes[mask].sum(-1), torch.ones(int(mask.sum())))
    assert (pred.binary[~mask] == 0).all() and (pred.levels[1, :, 11:] == 0).all()
    # snippet 5 reads level 0 at 5, level 1 at 2, level 2 at 1
    logits = [out.binary_logits[0][0, 5], out.binary_logits[1][0, 2], out.binary_logits[2][0, 1]]
    torch.testing.assert_close(pred.levels[0, :, 5], torch.sigmoid(torch.stack(logits)))
    default = model.config
    try:
        model.config = default.model_copy(update={"fusion": "finest"})
        torch.testing.assert_close(model.predict(x, mask).binary[0, 5], torch.sigmoid(logits[0]))
        model.config = default.model_copy(update={"fusion": "mean"})
        torch.testing.assert_close(model.predict(x, mask).binary[0, 5], torch.sigmoid(torch.stack(logits).mean()))
    finally:
        model.config = default


def test_cached_text_features_give_the_same_outputs(model: CPLVAD) -> None:
    x, mask = _inputs([16], 16)
    with torch.no_grad():
        text = model.text_features()  # what text_embeddings.npz holds
        a, b = model(x, mask), model(x, mask, text=text)
        other = model(x, mask, text=torch.randn_like(text))
    torch.testing.assert_close(a.class_logits[1], b.class_logits[1])
    assert not torch.allclose(a.class_logits[1], other.class_logits[1])
    headless = CPLVAD(CPLVADConfig.tiny(text_source=None))
    with pytest.raises(ValueError, match="text_source=None"):
        headless(x, mask)
    with pytest.raises(ValueError, match="expected \\[3, 4, 512\\]"):
        headless(x, mask, text=text[:, :2])


def test_checkpoint_round_trip_without_frozen_clip(model: CPLVAD) -> None:
    ckpt = model.checkpoint()
    assert ckpt["config"]["d_model"] == 32
    assert not any(k.startswith(TEXT_ENCODER_PREFIX) for k in ckpt["model"])
    assert "prompts.ctx" in ckpt["model"]
    restored = CPLVAD.from_checkpoint(ckpt).eval()
    x, mask = _inputs([24], 24)
    torch.testing.assert_close(restored.predict(x, mask).classes, model.predict(x, mask).classes)


def test_drop_path_only_while_training() -> None:
    torch.manual_seed(0)
    net = CPLVAD(CPLVADConfig.tiny(text_source=None, drop_path=0.5))
    x, mask = _inputs([16, 16, 16, 16], 16)
    text = torch.randn(3, 4, 512)
    net.train()
    a, b = net(x, mask, text).binary_logits[0], net(x, mask, text).binary_logits[0]
    assert not torch.allclose(a, b)
    net.eval()
    torch.testing.assert_close(net(x, mask, text).binary_logits[0], net(x, mask, text).binary_logits[0])
