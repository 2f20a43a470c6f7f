"""Timing shared by the benchmark scripts."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(call: Callable[[], object], *, seconds: float, warmup: int = 2, min_iters: int = 3) -> float:
    """Median wall time of ``call`` over at least ``min_iters`` runs and about ``seconds`` in total."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
