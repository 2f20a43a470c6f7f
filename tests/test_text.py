from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from train.models.text import (CTX, EOT_ID, LEVEL, NORMALITY, SOT_ID, PromptLearner, encode_token_embeddings,
                        load_text_embeddings, load_text_encoder, load_tokenizer, prompt_layout,
                        save_text_embeddings, text_embeddings, tokenize)

CLASSES = ("normal", "abuse", "road accidents")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


@pytest.fixture(scope="module")
def prompts(tokenizer) -> PromptLearner:
    return PromptLearner(CLASSES, num_levels=3, source="tiny", num_ctx=4)


@pytest.mark.parametrize("text, ids", [
    # ids of the released CLIP vocabulary
    ("a photo of a cat", [SOT_ID, 320, 1125, 539, 320, 2368, EOT_ID]),
    ("A Photo of a TREE!", [SOT_ID, 320, 1125, 539, 320, 2677, 256, EOT_ID]),
    ("person working at a computer", [SOT_ID, 2533, 1699, 536, 320, 11639, 652, EOT_ID]),
])
def test_offline_tokenizer_matches_clip_vocabulary(tokenizer, text: str, ids: list[int]) -> None:
    assert tokenizer(text)["input_ids"] == ids


def test_text_encoder_is_frozen() -> None:
    encoder = load_text_encoder("tiny")
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert encoder.text_projection.out_features == 512


def test_prompt_layout_positions(tokenizer) -> None:
    layout = prompt_layout(tokenizer, CLASSES, num_ctx=4)
    prefix = tokenize(tokenizer, "a video of the")
    for m, name in enumerate(CLASSES):
        row = layout.ids[m].tolist()
        words = tokenize(tokenizer, name)
        p = 1 + len(prefix) + len(words)  # first context vector
        assert row[: p] == [SOT_ID, *prefix, *words]
        assert row[p: p + 4] == [CTX] * 4
        assert row[p + 4] == LEVEL and row[p + 5] == NORMALITY and row[p + 6] == EOT_ID
        assert layout.eot[m] == p + 6
    assert len(tokenize(tokenizer, "road accidents")) == 2  # two-token class: its prompt is the longest
    assert layout.context_length == int(layout.eot.max()) + 1 < 77


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_manual_text_run_equals_transformers_forward(tokenizer, attention: str) -> None:
    encoder = load_text_encoder("tiny")
    encoder.set_attn_implementation(attention)
    ids = torch.tensor(tokenizer(["a photo of a cat", "a video of the riot"], padding="max_length",
                                 max_length=12)["input_ids"])
    eot = (ids == EOT_ID).int().argmax(1)
    with torch.no_grad():
        expected = encoder(input_ids=ids).text_embeds
        got = encode_token_embeddings(encoder, encoder.text_model.embeddings.token_embedding(ids), eot)
    torch.testing.assert_close(got, expected)


def test_short_context_equals_77_tokens(prompts: PromptLearner) -> None:
    with torch.no_grad():
        short, full = prompts(), prompts(context_length=77)
    assert prompts.layout.context_length < 20
    assert short.shape == (3, len(CLASSES), 512)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-4)


def test_gradients_reach_prompt_tokens_not_the_encoder(prompts: PromptLearner) -> None:
    prompts.zero_grad()
    prompts.train()
    assert not prompts.encoder.training
    prompts().square().sum().backward()
    for p in (prompts.ctx, prompts.level, prompts.normality):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in prompts.encoder.parameters())
    prompts.zero_grad()


def test_levels_and_normality_tokens_reach_their_prompts(prompts: PromptLearner) -> None:
    with torch.no_grad():
        before = prompts()
        assert not torch.allclose(before[0], before[1])  # a level token per level
        prompts.normality[1] += 1.0  # ABNORMAL: only classes 1.. use it
        after = prompts()
        prompts.normality[1] -= 1.0
    torch.testing.assert_close(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1:], before[:, 1:])


def test_text_embeddings_cache_round_trip_and_new_classes(prompts: PromptLearner, tmp_path: Path) -> None:
    emb = text_embeddings(prompts)
    assert emb.embeddings.shape == (3, 3, 512) and emb.embeddings.dtype == np.float32
    path = save_text_embeddings(tmp_path / "text_embeddings.npz", emb)
    loaded = load_text_embeddings(path)
    assert loaded.classes == CLASSES and loaded.hash == emb.hash and loaded.source == "tiny"
    np.testing.assert_array_equal(loaded.embeddings, emb.embeddings)

    more = text_embeddings(prompts, [*CLASSES, "vandalism"])  # a new category, same learned tokens
    np.testing.assert_allclose(more.embeddings[:, :3], emb.embeddings, atol=1e-5)
    assert more.embeddings.shape == (3, 4, 512) and more.hash != emb.hash
    with torch.no_grad():
        prompts.ctx[0, 0] += 0.5
    assert text_embeddings(prompts).hash != emb.hash
    with torch.no_grad():
        prompts.ctx[0, 0] -= 0.5


def test_local_hugging_face_directory_source(tokenizer, tmp_path: Path) -> None:
    from transformers import CLIPModel

    from train.models.clip_source import tiny_config

    CLIPModel(tiny_config()).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder = load_text_encoder(tmp_path)
    assert not any(p.requires_grad for p in encoder.parameters())
    text = "a photo of a cat"
    assert load_tokenizer(str(tmp_path))(text)["input_ids"] == tokenizer(text)["input_ids"]
    prompts = PromptLearner(CLASSES, num_levels=2, source=str(tmp_path), num_ctx=2, encoder=encoder)
    assert prompts.source == f"real:{tmp_path.name}" and prompts().shape == (2, 3, 512)


def test_missing_context_room_is_a_clear_error(tokenizer) -> None:
    with pytest.raises(ValueError, match="context_length 10"):
        prompt_layout(tokenizer, CLASSES, num_ctx=9, context_length=10)
