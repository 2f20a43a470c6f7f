"""The INT8 accuracy gate: INT8 vs float on held-out data, and the speed it buys on this machine.

Per model and flavour: output cosine (mean and 1st percentile over held-out samples) and the largest absolute
difference; for the head also frame-level AUC / AP of the score after each snippet that the device alerts on
(``edge.stream``: the ring buffer's window, the newest row, the smoother's level aggregation) with float and INT8
weights on labelled test videos; and ONNX Runtime latency of
float vs INT8 at batch 1 and 8, measured interleaved so machine load hits both alike. A model passes when cosine
p1 >= ``min_cosine`` and the AP drop <= ``max_ap_drop``; one that fails stays float (FP16 on TensorRT).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from edge.backends import InferenceBackend, cosine_rows
from edge.configfile import StrictModel
from edge.smoother import SmootherParams
from edge.stream import backend_head, stream_outputs


class GateBudget(StrictModel):
    min_cosine: float = Field(0.98, gt=0, le=1, description="INT8 vs float output cosine, 1st percentile")
    max_ap_drop: float = Field(0.01, ge=0, le=1, description="head frame AP drop, as a fraction (0.01 = 1 point)")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def cosine_summary(cos: np.ndarray) -> dict[str, float]:
    """{"cosine_mean", "cosine_p1"} of per-sample cosines."""
    return {"cosine_mean": float(np.mean(cos)), "cosine_p1": float(np.percentile(cos, 1))}


def judge(figures: Mapping[str, float], budget: GateBudget) -> Verdict:
    """Pass / fail of one model's figures (``cosine_p1``, optional ``ap_drop``) against the budget."""
    problems = []
    if figures["cosine_p1"] < budget.min_cosine:
        problems.append(f"cosine p1 {figures['cosine_p1']:.4f} < {budget.min_cosine}")
    if "ap_drop" in figures and figures["ap_drop"] > budget.max_ap_drop:
        problems.append(f"AP drop {100 * figures['ap_drop']:.2f} points > {100 * budget.max_ap_drop:.2f}")
    return Verdict(not problems, "; ".join(problems) or "within budget")


def compare_outputs(ref: InferenceBackend, test: InferenceBackend, feeds: Sequence[Mapping[str, np.ndarray]],
                    outputs: Sequence[str]) -> dict[str, float]:
    """Cosine (mean, p1) of the concatenated ``outputs`` per sample, and max |diff|, over all feed batches."""
    cos, diff = [], 0.0
    for feed in feeds:
        a, b = ref.run(feed), test.run(feed)
        flat_a = np.concatenate([a[o].reshape(len(a[o]), -1) for o in outputs], axis=1)
        flat_b = np.concatenate([b[o].reshape(len(b[o]), -1) for o in outputs], axis=1)
        cos.append(cosine_rows(flat_a, flat_b))
        diff = max(diff, float(np.abs(flat_a - flat_b).max()))
    return cosine_summary(np.concatenate(cos)) | {"max_abs_diff": diff}


def stream_scores(head: InferenceBackend, features: np.ndarray, text: np.ndarray, window: int,
                  params: SmootherParams, batch: int = 64) -> np.ndarray:
    """The score after every snippet of a video [T, 512] that the device thresholds (``edge.stream``) -> [T]."""
    return stream_outputs(backend_head(head, text), features, window, batch).scores(params)


def speed(backends: Mapping[str, InferenceBackend], make_feed: Callable[[int], Mapping[str, np.ndarray]],
          batches: Sequence[int] = (1, 8), rounds: int = 5) -> dict[str, dict[int, float]]:
    """Median ms per call of each backend per batch size; calls are interleaved round by round."""
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in backends}
    for b in batches:
        feed = make_feed(b)
        for backend in backends.values():
            backend.run(feed)  # warm-up
        for _ in range(rounds):
            for name, backend in backends.items():
                start = time.perf_counter()
                backend.run(feed)
                times[name][b].append(1000 * (time.perf_counter() - start))
    return {name: {b: float(np.median(v)) for b, v in per.items()} for name, per in times.items()}


def format_table(rows: Sequence[Mapping[str, object]]) -> str:
    """The gate as a text table: one row per model and flavour."""
    cols = ("model", "flavour", "cos mean", "cos p1", "max|d|", "AUC f/i8", "AP f/i8", "AP drop", "x b1", "x b8",
            "verdict")
    lines = [" ".join(f"{c:>10}" if i else f"{c:12}" for i, c in enumerate(cols))]
    for r in rows:
        auc = f"{r['auc_float']:.3f}/{r['auc_int8']:.3f}" if "auc_float" in r else "-"
        ap = f"{r['ap_float']:.3f}/{r['ap_int8']:.3f}" if "ap_float" in r else "-"
        drop = f"{100 * float(r['ap_drop']):+.2f}pt" if "ap_drop" in r else "-"
        sp = r.get("speedup", {})
        cells = [f"{r['model']:12}", f"{r['flavour']:>10}", f"{r['cosine_mean']:>10.4f}", f"{r['cosine_p1']:>10.4f}",
                 f"{r['max_abs_diff']:>10.3g}", f"{auc:>10}", f"{ap:>10}", f"{drop:>10}",
                 f"{sp.get(1, float('nan')):>10.2f}", f"{sp.get(8, float('nan')):>10.2f}",
                 f"{'INT8' if r['passed'] else 'FLOAT'}: {r['reason']}"]
        lines.append(" ".join(cells))
    return "\n".join(lines)
