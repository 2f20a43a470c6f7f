"""Per-camera ring buffer of the last W snippet features: the student's input window.

The window is laid out oldest first with the valid snippets as a prefix and zeros after them while the
buffer fills (``mask`` says which rows are real). A valid prefix suits the causal student: its outputs at the
valid positions depend only on those positions and their past, never on the padding, so they equal what the
model gives on the stream itself; the newest snippet's output is at row ``len(ring) - 1``.

Push is O(1): every feature is written twice, at ``i`` and ``i + W`` of a ``[2W, D]`` array, so the last W
features are always the contiguous rows ``[head, head + W)`` and no roll or concatenation is needed.

``window_index`` and ``ring_windows`` are the same windows for a recorded sequence, all at once (the streaming
evaluation, the export's checks and the INT8 gate use them): one layout, written here.
"""
from __future__ import annotations

import threading

import numpy as np


def window_index(n: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ring buffer's window after each of ``n`` snippets, as gather indices.

    Returns (index [n, W] into the features with a zero row appended at ``n``, mask [n, W], newest row [n]):
    after snippet t the window holds snippets max(0, t-W+1) .. t as its first rows, zero rows after them.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0:
        raise ValueError(f"window must be a positive integer (snippets), got {window!r}")
    t = np.arange(n)[:, None]
    index = np.maximum(t - window + 1, 0) + np.arange(window)[None, :]  # [n, W]
    mask = index <= t
    return np.where(mask, index, n), mask, np.minimum(t[:, 0], window - 1)


def gather_windows(features: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` [..., W] of ``features`` [n, D] with a zero row at ``n`` -> float32 [..., W, D]."""
    padded = np.concatenate([features, np.zeros((1, features.shape[1]), features.dtype)])
    return padded[index].astype(np.float32)


def ring_windows(features: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring buffer's window after every snippet of a sequence [n, D]: (features [n, W, D] float32,
    mask [n, W]), what :meth:`FeatureRing.window` returns after each push. Memory grows with n x W: batch long
    sequences with :func:`window_index` and :func:`gather_windows`."""
    index, mask, _ = window_index(len(features), window)
    return gather_windows(features, index), mask


class FeatureRing:
    """The last ``window`` snippet features [D] of one camera (thread-safe: one writer, any readers)."""

    def __init__(self, window: int, dim: int = 512) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ValueError(f"window must be a positive integer (snippets), got {window!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive integer (feature size), got {dim!r}")
        self.size = window
        self.dim = dim
        self._data = np.zeros((2 * window, dim), np.float32)  # [2W, D], rows i and i+W hold the same feature
        self._count = 0  # features pushed since creation or reset
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Features pushed since creation or the last :meth:`reset` (the index of the next snippet)."""
        return self._count

    def __len__(self) -> int:
        """Valid rows in the window: ``min(count, window)``."""
        return min(self._count, self.size)

    @property
    def first_index(self) -> int:
        """Snippet index (in push order) of window row 0."""
        return self._count - len(self)

    @property
    def newest_row(self) -> int:
        """Window row of the newest snippet (-1 while empty): where the head's output for it is read."""
        return len(self) - 1

    def push(self, feature: np.ndarray) -> None:
        """Append one snippet feature [D]; the oldest falls out once the window is full."""
        feature = np.asarray(feature)
        if feature.shape != (self.dim,):
            raise ValueError(f"feature must have shape ({self.dim},), got {feature.shape}")
        if not np.all(np.isfinite(feature)):
            raise ValueError("feature has NaN or inf values; refusing to put them in the window")
        with self._lock:
            slot = self._count % self.size
            self._data[slot] = feature
            self._data[slot + self.size] = feature
            self._count += 1

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(features [W, D] float32 oldest first, zero rows after the valid ones; mask [W] bool), copies."""
        with self._lock:
            n = len(self)
            mask = np.arange(self.size) < n  # [W]
            if n < self.size:  # still filling: rows 0..n-1 were written in order, the rest are zeros
                return self._data[: self.size].copy(), mask
            head = self._count % self.size  # slot of the oldest feature
            return self._data[head: head + self.size].copy(), mask

    def reset(self) -> None:
        """Forget every feature (e.g. when the camera's stream restarts and the past no longer applies)."""
        with self._lock:
            self._data[:] = 0.0
            self._count = 0
