from __future__ import annotations

from train.demo import busiest_interval


def _stats(interval: float, fps: list[float], ms: float, calls: int) -> dict:
    return {"interval_s": interval, "cameras": {f"cam{i}": {"fps": f} for i, f in enumerate(fps)},
            "stages": {"clip": {"calls": calls, "ms_per_item": ms}, "head": {"calls": 0, "ms_per_item": 0.0}}}


def test_summary_reads_the_busiest_interval_not_the_closing_one() -> None:
    stats = [_stats(5.0, [2.0, 3.0], 40.0, 10), _stats(5.0, [4.0, 4.5], 35.5, 12), _stats(0.004, [0.0, 0.0], 0.0, 0)]
    assert busiest_interval(stats) == {"interval_s": 5.0, "cameras": 2, "fps_total": 8.5,
                                       "ms_per_item": {"clip": 35.5}}
