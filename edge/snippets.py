"""Frames -> snippet features: one code for the device loop and the feature extractor.

A snippet is 16 consecutive frames (VadCLIP convention); frame ``i`` belongs to snippet ``i // 16``. Only the
frames at offsets ``0, K, 2K, ... < 16`` inside a snippet are encoded (``encode_every`` = K, 1..16); the
snippet feature is the mean of their embeddings. A video of F frames has ``F // 16`` snippets: a trailing
partial snippet is dropped, by the feature extractor (train/data/extract.py) and the device alike, so that
the device scores the snippets the model was trained on. Embeddings may carry leading axes (e.g. crops):
``[..., D]`` in, ``[..., D]`` out.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

FRAMES_PER_SNIPPET = 16  # frames per snippet feature (VadCLIP convention); declared only here
EMBED_DIM = 512  # width of a snippet feature: the CLIP ViT-B/16 image projection; declared only here
# The snippet policy, declared only here: the extractor, the export and (through the bundle) the device default to
# it. 16 = one CLIP image per snippet (frame 0 of each 16), the device's budget: ViT-B/16 costs ~230 ms per image
# on 2 CPU cores in FP32 (~100 ms INT8), so a 25 frames/s camera needs 1.6 images/s here and 25 at K=1. Features
# must be extracted with the policy the device runs (export refuses a mismatch); the public VadCLIP release is
# K=1 (README: "Snippet policy" gives the accuracy cost of running such a model at a larger K).
DEFAULT_ENCODE_EVERY = 16


def encoded_offsets(encode_every: int) -> np.ndarray:
    """Offsets inside a snippet whose frames are encoded: ``0, K, 2K, ... < 16``."""
    if not isinstance(encode_every, (int, np.integer)) or not 1 <= encode_every <= FRAMES_PER_SNIPPET:
        raise ValueError(f"encode_every must be an integer in 1..{FRAMES_PER_SNIPPET}, got {encode_every!r}")
    return np.arange(0, FRAMES_PER_SNIPPET, int(encode_every))


def snippet_count(num_frames: int) -> int:
    return num_frames // FRAMES_PER_SNIPPET


def encoded_frame_indices(num_frames: int, encode_every: int) -> np.ndarray:
    """Indices of the frames to encode for the whole snippets of a ``num_frames`` video, in order."""
    starts = np.arange(snippet_count(num_frames)) * FRAMES_PER_SNIPPET  # [T]
    return (starts[:, None] + encoded_offsets(encode_every)[None, :]).reshape(-1)  # [T * per]


def snippet_features(embeddings: np.ndarray, encode_every: int) -> np.ndarray:
    """Embeddings of the encoded frames, in order [T * per, ..., D] -> snippet features [T, ..., D] float32.

    ``per`` = frames encoded per snippet; rows are those of ``encoded_frame_indices``.
    """
    per = len(encoded_offsets(encode_every))
    if embeddings.shape[0] % per:
        raise ValueError(f"{embeddings.shape[0]} embeddings do not fill whole snippets of {per} encoded frames "
                         f"(encode_every={encode_every})")
    grouped = embeddings.reshape(embeddings.shape[0] // per, per, *embeddings.shape[1:])  # [T, per, ..., D]
    return grouped.mean(axis=1, dtype=np.float64).astype(np.float32)


class Snippet(NamedTuple):
    index: int  # snippet number; it covers frames [16 * index, 16 * index + 15]
    feature: np.ndarray  # [..., D] float32


class SnippetAccumulator:
    """Incremental form of :func:`snippet_features` for a live stream.

    Call :meth:`push` for every frame in increasing index order, with the frame's embedding when
    :meth:`needs_encoding` says so and ``None`` otherwise. The snippet's feature comes back at its last frame.
    A snippet the stream skips part of (an index jump) is not emitted; ``incomplete`` counts those. A stream
    that sees only the encoded frames (the device's capture) calls :meth:`skip_to` before each of them and,
    when a file ends, with the file's frame count.
    """

    def __init__(self, encode_every: int = DEFAULT_ENCODE_EVERY) -> None:
        self.encode_every = int(encode_every)
        self._offsets = frozenset(int(o) for o in encoded_offsets(encode_every))
        self.incomplete = 0
        self.reset()

    def reset(self) -> None:
        """Forget the snippet in progress (e.g. after a camera reconnects)."""
        self._snippet = -1
        self._last_frame = -1
        self._sum: np.ndarray | None = None
        self._count = 0
        self._frames_seen = 0

    def needs_encoding(self, frame_index: int) -> bool:
        return frame_index % FRAMES_PER_SNIPPET in self._offsets

    def skip_to(self, frame_index: int) -> list[Snippet]:
        """Push as ``None`` the frames not encoded after the last pushed one and before ``frame_index``; the
        snippets they finish. ``skip_to(F)`` at the end of an F-frame file finishes its last whole snippet, whose
        last frame is not encoded when ``encode_every`` > 1; a trailing partial snippet stays dropped."""
        snippets = []
        for j in range(self._last_frame + 1, frame_index):
            if not self.needs_encoding(j):
                snippet = self.push(j, None)
                if snippet is not None:
                    snippets.append(snippet)
        return snippets

    def push(self, frame_index: int, embedding: np.ndarray | None) -> Snippet | None:
        if frame_index <= self._last_frame:
            raise ValueError(f"frame {frame_index} pushed after frame {self._last_frame}; frames must increase")
        encode = self.needs_encoding(frame_index)
        if encode and embedding is None:
            raise ValueError(f"frame {frame_index} needs its embedding (encode_every={self.encode_every})")
        if not encode and embedding is not None:
            raise ValueError(f"frame {frame_index} is not encoded (encode_every={self.encode_every}); pass None")
        snippet = frame_index // FRAMES_PER_SNIPPET
        if snippet != self._snippet:
            if self._frames_seen:
                self.incomplete += 1  # the stream left the previous snippet before its last frame
            self._snippet, self._sum, self._count, self._frames_seen = snippet, None, 0, 0
        self._last_frame = frame_index
        self._frames_seen += 1
        if embedding is not None:
            emb = np.asarray(embedding, np.float64)
            self._sum = emb.copy() if self._sum is None else self._sum + emb
            self._count += 1
        if frame_index % FRAMES_PER_SNIPPET != FRAMES_PER_SNIPPET - 1:
            return None
        complete = self._frames_seen == FRAMES_PER_SNIPPET
        total, count = self._sum, self._count
        self._sum, self._count, self._frames_seen = None, 0, 0
        if not complete:
            self.incomplete += 1
            return None
        return Snippet(snippet, (total / count).astype(np.float32))
