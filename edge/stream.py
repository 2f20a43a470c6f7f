"""The stream contract: the score after each snippet, written once.

The device loop (``edge.pipeline``), the streaming evaluation (``train.evaluation.stream``) and the INT8 gate
(``calibration.gate``) score a stream with these functions, so the three see the same numbers:

1. the window: after snippet t the ring buffer holds snippets max(0, t-W+1) .. t as its first rows, zeros after
   them (``edge.ringbuffer``: ``FeatureRing`` live, ``window_index`` for a recorded sequence);
2. the head runs on the window (:func:`run_head`); the snippet's outputs are those at the newest valid row
   (:func:`newest_outputs`): per-level anomaly probabilities [L] and class probabilities [L, M], whose level mean
   gives the category;
3. the score after the snippet is the smoother's level aggregation of the [L] probabilities
   (``SmootherParams.score``: RBF around the median level by default): the number the device reports and
   thresholds, and the one the gate and the evaluation rank for AUC / AP;
4. the causal smoother turns the scores into events, ignoring the first ``warmup`` snippets of a stream
   (``edge.smoother``; :func:`smooth` for a recorded stream).

:func:`stream_outputs` runs 1-2 over a recorded sequence with any head (ONNX Runtime or TensorRT through
:func:`backend_head`, the torch student in ``train``), in batches of windows.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.backends import InferenceBackend
from edge.car import Run
from edge.ringbuffer import gather_windows, window_index
from edge.smoother import CausalSmoother, SmootherParams

# (features [B, W, D] float32, mask [B, W] bool) -> (binary [B, L, W], classes [B, L, W, M]) probabilities
HeadFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SnippetOutputs:
    """The head's outputs for a run of snippets, each read at its newest window row; one row per snippet."""

    levels: np.ndarray  # [N, L] per-level anomaly probabilities
    classes: np.ndarray  # [N, L, M] per-level class probabilities

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def class_probs(self) -> np.ndarray:
        """[N, M] float64: the level mean of the class probabilities (the category's input)."""
        return self.classes.mean(axis=1, dtype=np.float64)

    def scores(self, params: SmootherParams) -> np.ndarray:
        """[N] float64: the score after each snippet, what the smoother thresholds (``SmootherParams.score``)."""
        return params.score(self.levels)


def backend_head(backend: InferenceBackend, text: np.ndarray) -> HeadFn:
    """The bundle's head (``features``, ``mask``, ``text`` -> ``binary``, ``classes``) as a :data:`HeadFn`."""
    def head(features: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = backend.run({"features": features, "mask": mask, "text": text})
        return out["binary"], out["classes"]
    return head


def newest_outputs(binary: np.ndarray, classes: np.ndarray, rows: Sequence[int] | np.ndarray) -> SnippetOutputs:
    """Outputs of B windows (binary [B, L, W], classes [B, L, W, M]) at each window's newest row ``rows`` [B]."""
    rows = np.asarray(rows, dtype=np.int64)
    if binary.ndim != 3 or classes.ndim != 4 or len(rows) != len(binary):
        raise ValueError(f"head outputs binary {binary.shape} / classes {classes.shape} with {len(rows)} rows; "
                         "expected [B, L, W], [B, L, W, M] and B rows")
    batch = np.arange(len(rows))
    return SnippetOutputs(binary[batch, :, rows], classes[batch, :, rows])  # [B, L], [B, L, M]


def run_head(head: HeadFn, features: np.ndarray, mask: np.ndarray) -> SnippetOutputs:
    """The head on ring-buffer windows (features [B, W, D], mask [B, W] with the valid rows first) at their
    newest rows."""
    rows = np.asarray(mask).sum(axis=1) - 1
    if (rows < 0).any():
        raise ValueError("run_head: a window has no valid row; push a snippet before scoring it")
    binary, classes = head(features, mask)
    return newest_outputs(np.asarray(binary), np.asarray(classes), rows)


def stream_outputs(head: HeadFn, features: np.ndarray, window: int, batch: int = 64) -> SnippetOutputs:
    """The device's outputs after every snippet of a recorded sequence [N, D]: the window after snippet t (as
    the ring buffer holds it) through the head, read at its newest row; windows run ``batch`` at a time."""
    if batch < 1:
        raise ValueError(f"batch={batch}; expected an integer >= 1 (windows per head call)")
    features = np.asarray(features)
    index, mask, _ = window_index(len(features), window)
    parts = [run_head(head, gather_windows(features, index[s:s + batch]), mask[s:s + batch])
             for s in range(0, len(features), batch)]
    if not parts:
        raise ValueError("stream_outputs: the sequence has no snippets")
    return SnippetOutputs(np.concatenate([p.levels for p in parts]), np.concatenate([p.classes for p in parts]))


def smooth(outputs: SnippetOutputs, params: SmootherParams) -> tuple[np.ndarray, list[Run]]:
    """The device's smoother over a recorded stream, closed after its last snippet: (the score after each
    snippet [N], the events as inclusive snippet runs)."""
    smoother = CausalSmoother(params)
    scores, events, start = [], [], None
    for levels, probs in zip(outputs.levels, outputs.class_probs):
        update = smoother.update(levels, probs)
        scores.append(update.score)
        start = update.opened_at if update.opened_at is not None else start
        if update.closed_at is not None:
            events.append((start, update.closed_at))
    closing = smoother.close()
    if closing.closed_at is not None:
        events.append((start, closing.closed_at))
    return np.asarray(scores, dtype=np.float64), events
