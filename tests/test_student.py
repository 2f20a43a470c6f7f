from __future__ import annotations

import pytest
import torch

from train.models.student import (CausalConv1d, Student, StudentConfig, causal_band, causal_max_pool)

M, L_TEXT = 5, 3


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(0)
    return Student(StudentConfig.tiny(dropout=0.0)).eval()


def _text(levels: int = L_TEXT, classes: int = M) -> torch.Tensor:
    return torch.randn(levels, classes, 512, generator=torch.Generator().manual_seed(1))


def _features(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, 512, generator=torch.Generator().manual_seed(seed)) * 3


# --- small pure pieces, hand-computed cases


def test_causal_band_dilation_and_span() -> None:
    band = causal_band(7, dilation=2, span=3)
    assert band[6].nonzero().flatten().tolist() == [2, 4, 6]  # lags 0, 2, 4
    assert band[3].nonzero().flatten().tolist() == [1, 3]
    assert band[0].nonzero().flatten().tolist() == [0]
    assert not band.triu(1).any()  # never a future key


def test_causal_max_pool_looks_back_only() -> None:
    x = torch.tensor([[5.0, 1.0, 2.0, 0.0, -3.0, 7.0]])[..., None]
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 0]])  # the 7 is padding
    y = causal_max_pool(x, mask, dilation=2)[0, :, 0]
    # t: max(x[t], x[t-2], x[t-4]) over existing rows
    assert y.tolist() == [5.0, 1.0, 5.0, 1.0, 5.0, 0.0]


def test_causal_conv_uses_left_padding() -> None:
    conv = CausalConv1d(1, 1, 3, bias=False)
    with torch.no_grad():
        conv.conv.weight[:] = torch.tensor([[[100.0, 10.0, 1.0]]])  # taps t-2d, t-d, t
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])[..., None]
    y = conv(x, torch.ones(1, 4), dilation=1)[0, :, 0]
    assert y.tolist() == [1.0, 12.0, 123.0, 234.0]
    y2 = conv(x, torch.ones(1, 4), dilation=2)[0, :, 0]
    assert y2.tolist() == [1.0, 2.0, 13.0, 24.0]  # taps t-4 (none yet), t-2, t


def test_receptive_field_of_defaults() -> None:
    cfg = StudentConfig()
    # embed 4; level 0: conv 2 + attn 7; level 1: conv 2 + attn 14; level 2: conv 4 + attn 28; head 2*2*4 = 16
    assert cfg.receptive_field == 1 + 4 + 9 + 16 + 32 + 16


# --- the model


def test_shapes_and_probabilities(student: Student) -> None:
    W = student.config.window
    x, mask = _features(2, W), torch.ones(2, W, dtype=torch.bool)
    mask[1, 5:] = False
    binary, classes = student(x, mask, _text())
    assert binary.shape == (2, L_TEXT, W) and classes.shape == (2, L_TEXT, W, M)
    assert ((binary > 0) & (binary < 1))[0].all()
    torch.testing.assert_close(classes[0].sum(-1), torch.ones(L_TEXT, W))
    assert (binary[1, :, 5:] == 0).all() and (classes[1, :, 5:] == 0).all()
    # the category list is an input: another M works without a rebuild
    assert student(x, mask, _text(classes=9))[1].shape == (2, L_TEXT, W, 9)
    with pytest.raises(ValueError, match="levels, classes, dim"):
        student(x, mask, _text(levels=2))


def test_future_snippets_never_change_past_outputs(student: Student) -> None:
    W = student.config.window
    x = _features(1, W)
    mask = torch.ones(1, W, dtype=torch.bool)
    text = _text()
    b0, c0 = student(x, mask, text)
    for t in (0, 3, W // 2, W - 2):
        y = x.clone()
        y[:, t + 1:] = torch.randn(1, W - t - 1, 512) * 10  # a different future
        b1, c1 = student(y, mask, text)
        torch.testing.assert_close(b1[..., : t + 1], b0[..., : t + 1], rtol=0, atol=1e-6)
        torch.testing.assert_close(c1[..., : t + 1, :], c0[..., : t + 1, :], rtol=0, atol=1e-6)
        assert not torch.allclose(b1[..., t + 1:], b0[..., t + 1:])  # the future rows do see the change


def test_filling_window_equals_the_stream_prefix(student: Student) -> None:
    """The ring buffer's layout while filling (valid rows first, zeros after, any garbage ignored)."""
    W = student.config.window
    x = _features(1, W)
    text = _text()
    full_b, full_c = student(x, torch.ones(1, W, dtype=torch.bool), text)
    for n in (1, 5, W - 1):
        y = x.clone()
        y[:, n:] = 1e3  # padding content must not matter
        mask = torch.arange(W)[None] < n
        b, c = student(y, mask, text)
        torch.testing.assert_close(b[..., :n], full_b[..., :n], rtol=0, atol=1e-6)
        torch.testing.assert_close(c[..., :n, :], full_c[..., :n, :], rtol=0, atol=1e-6)


def test_outputs_ignore_snippets_beyond_the_receptive_field() -> None:
    cfg = StudentConfig.tiny(dropout=0.0, window=64, attn_span=2, num_levels=2)
    torch.manual_seed(0)
    model = Student(cfg).eval()
    rf = cfg.receptive_field
    assert rf < 64
    x = _features(1, 64)
    text = _text(levels=2)
    mask = torch.ones(1, 64, dtype=torch.bool)
    b0, _ = model(x, mask, text)
    y = x.clone()
    y[:, : 64 - rf] = -x[:, : 64 - rf]  # change everything older than the receptive field of the last row
    b1, _ = model(y, mask, text)
    torch.testing.assert_close(b1[..., -1], b0[..., -1], rtol=0, atol=1e-6)
    y[:, 64 - rf] += 5.0  # the oldest snippet inside it
    assert not torch.allclose(model(y, mask, text)[0][..., -1], b0[..., -1])


def test_checkpoint_round_trip(student: Student) -> None:
    ckpt = student.checkpoint(dataset="ucf")
    again = Student.from_checkpoint(ckpt).eval()
    assert again.config == student.config and ckpt["dataset"] == "ucf"
    x, mask = _features(1, student.config.window), torch.ones(1, student.config.window, dtype=torch.bool)
    torch.testing.assert_close(again(x, mask, _text())[0], student(x, mask, _text())[0])
