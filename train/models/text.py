"""The text side of CPL-VAD: CLIP tokenizer, the frozen CLIP text encoder and the learned multi-level prompts.

A prompt for class ``m`` at pyramid level ``i`` is assembled in token-embedding space::

    [SOT] a video of the <class m> [CTX_1..CTX_n] [LEVEL_i] [NORMAL|ABNORMAL] [EOT] (pad)

The context vectors are shared by all classes and levels, one level token per level, and the normality token
is NORMAL for class 0 (always the normal class) and ABNORMAL for the others. The frozen encoder is causal, so
its output at EOT depends only on the tokens up to EOT: the prompts are run on the shortest context that holds
them, not on CLIP's 77 positions. After training the prompt output ``F_T`` [L, M, 512] no longer depends on
the video; it is computed once and shipped as ``text_embeddings.npz`` (see ``save_text_embeddings``), and a
new category list only needs that cache recomputed with the learned tokens.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from train.models.clip_source import describe, is_random, pretrained_args, resolve, resolve_config
from train.paths import public_file

log = logging.getLogger(__name__)

SOT_ID = 49406  # <|startoftext|> in the CLIP vocabulary
EOT_ID = 49407  # <|endoftext|>
NUM_MERGES = 49152 - 256 - 2  # merges of the released CLIP vocabulary (openai/CLIP's SimpleTokenizer)
PROMPT_PREFIX = "a video of the"
BPE_FILE = ("clip", "bpe_simple_vocab_16e6.txt.gz")

# Placeholder ids in a prompt layout: where the learned vectors go. Negative, so never a real token.
CTX, LEVEL, NORMALITY = -1, -2, -3


# ----------------------------------------------------------------------------------------------------------
# Tokenizer


def byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for bytes 0..255, in CLIP's vocabulary order.

    Printable Latin-1 bytes stand for themselves; the others are mapped to code points from 256 up.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def bpe_vocabulary(bpe_path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's (vocab, merges) from ``bpe_simple_vocab_16e6.txt.gz``.

    vocab = bytes, bytes + ``</w>``, one entry per merge, then SOT and EOT (ids 49406, 49407).
    """
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : NUM_MERGES + 1]  # first line is a version header
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{bpe_path} is not CLIP's BPE merge list (expected {NUM_MERGES} pairs)")
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def load_tokenizer(source: str | Path = "tiny", bpe_path: str | Path | None = None) -> CLIPTokenizer:
    """The CLIP tokenizer: a real source's own (Hugging Face id or folder), else built offline from the BPE file.

    ``bpe_path`` defaults to the shipped ``train/data/public/clip/bpe_simple_vocab_16e6.txt.gz``.
    """
    if not is_random(source):
        real = resolve(source)  # a Hugging Face id (its cached snapshot folder) or a local folder
        if (real.folder / "tokenizer.json").is_file() or (real.folder / "vocab.json").is_file():
            return CLIPTokenizer.from_pretrained(real.load, revision=real.revision)
        if real.repo_id:  # online, the tokenizer files may not be in the cache yet
            try:
                return CLIPTokenizer.from_pretrained(real.load, revision=real.revision)
            except OSError:
                log.info("%s has no tokenizer files: using the CLIP BPE vocabulary", source)
    bpe = Path(bpe_path) if bpe_path is not None else public_file(*BPE_FILE)
    vocab, merges = bpe_vocabulary(bpe)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    assert tokenizer.bos_token_id == SOT_ID and tokenizer.eos_token_id == EOT_ID
    return tokenizer


def tokenize(tokenizer: CLIPTokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without SOT/EOT."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------------------------------------
# Frozen text encoder


def load_text_encoder(source: str | Path, seed: int = 0) -> CLIPTextModelWithProjection:
    """The CLIP text encoder + projection, frozen (no gradients, eval mode).

    ``source``: a Hugging Face id or a local HF CLIP folder (real weights), ``random`` (ViT-B/16 architecture,
    seeded random weights) or ``tiny`` (small, seeded random; tests).
    """
    if is_random(source):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            encoder = CLIPTextModelWithProjection(resolve_config(source).text_config)
    else:
        path, kwargs = pretrained_args(source)  # clear error when it is not a CLIP checkpoint
        encoder = CLIPTextModelWithProjection.from_pretrained(path, **kwargs)
    encoder.requires_grad_(False)
    return encoder.eval()


def encode_token_embeddings(encoder: CLIPTextModelWithProjection, embeds: Tensor, eot: Tensor) -> Tensor:
    """Run the CLIP text transformer on token embeddings [N, S, W] and return the projected EOT states [N, E].

    Same computation as ``CLIPTextModelWithProjection(input_ids)``, which only takes ids: position embeddings,
    causal transformer, final LayerNorm, the state at position ``eot`` [N], text projection.
    """
    text = encoder.text_model
    h = text.embeddings(inputs_embeds=embeds)  # (N, S, W) + position embeddings [:S]
    causal = None  # sdpa / flash attention: their own causal kernels (is_causal), as the ids forward uses them
    if text.config._attn_implementation == "eager":  # eager attention adds a mask (transformers' helper for it
        S = h.shape[1]  # changed its signature between versions, so it is made here)
        causal = torch.full((S, S), torch.finfo(h.dtype).min, dtype=h.dtype, device=h.device).triu(1)[None, None]
    h = text.encoder(inputs_embeds=h, attention_mask=causal, is_causal=True).last_hidden_state
    h = text.final_layer_norm(h)
    pooled = h[torch.arange(h.shape[0], device=h.device), eot]  # (N, W)
    return encoder.text_projection(pooled)  # (N, E)


# ----------------------------------------------------------------------------------------------------------
# Prompt layout and learner


@dataclass(frozen=True)
class PromptLayout:
    """Token ids of the M prompts [M, S]; placeholders (CTX, LEVEL, NORMALITY) where learned vectors go."""

    class_names: tuple[str, ...]
    ids: Tensor  # (M, S) int64; placeholders < 0, positions after EOT hold EOT
    eot: Tensor  # (M,) position of EOT

    @property
    def context_length(self) -> int:
        return self.ids.shape[1]


def prompt_layout(tokenizer: CLIPTokenizer, class_names: Sequence[str], num_ctx: int,
                  context_length: int | None = None) -> PromptLayout:
    """Lay out ``[SOT] a video of the <class> [CTX x num_ctx] [LEVEL] [NORMALITY] [EOT]`` for every class.

    ``context_length`` defaults to the shortest that holds every prompt; CLIP allows at most 77.
    """
    tail = [*[CTX] * num_ctx, LEVEL, NORMALITY, EOT_ID]
    rows = [[SOT_ID, *tokenize(tokenizer, f"{PROMPT_PREFIX} {name}"), *tail] for name in class_names]
    longest = max(len(r) for r in rows)
    length = longest if context_length is None else context_length
    if length < longest or length > 77:
        raise ValueError(f"context_length {context_length}: the prompts need {longest} tokens and CLIP "
                         f"holds 77; shorten the class names or use fewer context vectors "
                         f"(num_ctx={num_ctx})")
    ids = torch.full((len(rows), length), EOT_ID, dtype=torch.long)
    for m, row in enumerate(rows):
        ids[m, : len(row)] = torch.tensor(row)
    eot = torch.tensor([len(r) - 1 for r in rows])
    return PromptLayout(tuple(class_names), ids, eot)


class PromptLearner(nn.Module):
    """Learned multi-level prompts through a frozen CLIP text encoder: ``forward() -> F_T`` [L, M, E].

    Trainable: ``ctx`` [n_ctx, W] (shared), ``level`` [L, W] (one token per level), ``normality`` [2, W]
    (0 = NORMAL for class 0, 1 = ABNORMAL for the others). The encoder stays frozen and in eval mode.
    """

    def __init__(self, class_names: Sequence[str], num_levels: int, source: str | Path = "tiny",
                 num_ctx: int = 9, seed: int = 0, encoder: CLIPTextModelWithProjection | None = None) -> None:
        super().__init__()
        self.source = describe(source)
        self.tokenizer = load_tokenizer(source)
        self.encoder = encoder if encoder is not None else load_text_encoder(source, seed)
        self.encoder.requires_grad_(False)
        self.num_ctx = num_ctx
        self.layout = prompt_layout(self.tokenizer, class_names, num_ctx)
        token_embedding = self.encoder.text_model.embeddings.token_embedding
        width = token_embedding.embedding_dim
        generator = torch.Generator().manual_seed(seed)
        self.ctx = nn.Parameter(torch.randn(num_ctx, width, generator=generator) * 0.02)  # (n_ctx, W)
        self.level = nn.Parameter(torch.randn(num_levels, width, generator=generator) * 0.02)  # (L, W)
        # NORMAL / ABNORMAL start from the word embeddings of "normal" / "abnormal" (their first BPE token).
        words = [tokenize(self.tokenizer, w)[0] for w in ("normal", "abnormal")]
        self.normality = nn.Parameter(token_embedding.weight[words].detach().clone())  # (2, W)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.layout.class_names

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Change the category list (class 0 must stay the normal class); the learned tokens are kept."""
        self.layout = prompt_layout(self.tokenizer, class_names, self.num_ctx)

    def train(self, mode: bool = True) -> PromptLearner:
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    def embed(self, layout: PromptLayout) -> Tensor:
        """The prompts in token-embedding space [L, M, S, W] (learned vectors at their placeholders)."""
        ids = layout.ids.to(self.ctx.device)
        M, S = ids.shape
        L = self.level.shape[0]
        with torch.no_grad():
            base = self.encoder.text_model.embeddings.token_embedding(ids.clamp(min=0))  # (M, S, W)
        x = base.to(self.ctx.dtype).unsqueeze(0).repeat(L, 1, 1, 1)  # (L, M, S, W)
        rows, cols = (ids == CTX).nonzero(as_tuple=True)  # M * n_ctx places, row-major
        x[:, rows, cols] = self.ctx.repeat(M, 1)
        rows, cols = (ids == LEVEL).nonzero(as_tuple=True)  # one per class
        x[:, rows, cols] = self.level[:, None, :].expand(L, M, -1)
        rows, cols = (ids == NORMALITY).nonzero(as_tuple=True)
        x[:, rows, cols] = self.normality[(rows > 0).long()]  # class 0 NORMAL, others ABNORMAL
        return x

    def forward(self, class_names: Sequence[str] | None = None, context_length: int | None = None) -> Tensor:
        """F_T [L, M, E] for the current class names (or ``class_names`` without changing them)."""
        layout = self.layout
        if class_names is not None or context_length is not None:
            names = class_names or self.class_names
            layout = prompt_layout(self.tokenizer, names, self.num_ctx, context_length)
        x = self.embed(layout)  # (L, M, S, W)
        L, M, S, W = x.shape
        eot = layout.eot.to(x.device).repeat(L)  # (L*M,)
        return encode_token_embeddings(self.encoder, x.reshape(L * M, S, W), eot).view(L, M, -1)

    def params_hash(self) -> str:
        """Hash of the learned prompt tokens, the encoder source and the prompt template."""
        h = hashlib.sha256(f"{self.source}|{PROMPT_PREFIX}|{self.num_ctx}".encode())
        for p in (self.ctx, self.level, self.normality):
            h.update(p.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# The cache shipped with a model: text_embeddings.npz


@dataclass(frozen=True)
class TextEmbeddings:
    """F_T for a category list. npz keys: ``classes`` [M] str, ``embeddings`` [L, M, E] float32, ``hash``,
    ``source`` (the text encoder: ``real:<dir>``, ``random`` or ``tiny``)."""

    classes: tuple[str, ...]
    embeddings: np.ndarray  # (L, M, E) float32
    hash: str
    source: str


def text_embeddings(prompts: PromptLearner, class_names: Sequence[str] | None = None) -> TextEmbeddings:
    """Compute F_T once (after training) for the prompts' classes or a new ``class_names`` list."""
    names = tuple(class_names) if class_names is not None else prompts.class_names
    with torch.no_grad():
        emb = prompts(class_names=names).float().cpu().numpy()
    classes_hash = hashlib.sha256("|".join(names).encode()).hexdigest()[:8]
    return TextEmbeddings(names, emb, f"{prompts.params_hash()}-{classes_hash}", prompts.source)


def save_text_embeddings(path: str | Path, emb: TextEmbeddings) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, classes=np.array(emb.classes), embeddings=emb.embeddings.astype(np.float32),
             hash=np.array(emb.hash), source=np.array(emb.source))
    log.info("wrote %s (%d levels x %d classes x %d)", path, *emb.embeddings.shape)
    return path


def load_text_embeddings(path: str | Path) -> TextEmbeddings:
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        missing = {"classes", "embeddings", "hash", "source"} - set(z.files)
        if missing:
            raise ValueError(f"{path} is not a text-embeddings file: missing {', '.join(sorted(missing))}")
        classes = tuple(str(c) for c in z["classes"])
        emb = z["embeddings"].astype(np.float32)
        if emb.ndim != 3 or emb.shape[1] != len(classes):
            raise ValueError(f"{path}: embeddings have shape {emb.shape}; "
                             f"expected [levels, {len(classes)}, dim]")
        return TextEmbeddings(classes, emb, str(z["hash"]), str(z["source"]))
