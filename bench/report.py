"""The benchmark report from ``bench.run``'s results dict: ``report.md``, PNG plots, a printed summary table and
the README's results block (between ``<!-- results:start -->`` and ``<!-- results:end -->``).

    python -m bench.report RESULTS_DIR [--readme README.md]     # rebuild from RESULTS_DIR/results.json

Everything here reads the dict only, so a report can be rebuilt without re-running anything.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("bench.report")

PUBLISHED_NOTE = "different dataset (real UCF-Crime / XD-Violence features)"
# Published test-set figures (%, AUC for UCF, AP for XD; mAP avg over IoU 0.1..0.5).
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "ucf": {"CPL-VAD (paper)": {"auc": 88.24, "map_avg": 9.39}, "VadCLIP (paper)": {"auc": 88.02, "map_avg": 6.68}},
    "xd": {"CPL-VAD (paper)": {"ap": 88.53, "map_avg": 33.53}, "VadCLIP (paper)": {"ap": 84.51, "map_avg": 24.70}},
}
LAYOUT_NAMES = {"ucf": "UCF-Crime layout", "xd": "XD-Violence layout"}
METRICS = (("auc", "AUC"), ("ap", "AP"), ("map_avg", "mAP avg"), ("map_corrected_avg", "mAP avg corrected"))
STAGES = ("preprocess", "clip", "head", "smoother", "publish")


# ----------------------------------------------------------------------------------------------- tables


def fmt(value: object, digits: int = 2) -> str:
    """A table cell: floats rounded to ``digits``, integers as they are, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 2) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(results: dict, layout: str) -> str:
    """Our rows on the generated benchmark, then the papers' published rows, marked as another dataset."""
    rows = [[name, *(r.get(k) for k, _ in METRICS), "generated benchmark"]
            for name, r in results.get("accuracy", {}).get(layout, {}).items()]
    rows += [[name, *(r.get(k) for k, _ in METRICS), PUBLISHED_NOTE] for name, r in PUBLISHED[layout].items()]
    return markdown_table(["model", *(label for _, label in METRICS), "data"], rows)


def training_table(results: dict) -> str:
    return markdown_table(["stage", "epochs", "s/epoch", "wall s", "peak RSS MB"],
                          [[t["stage"], t.get("epochs"), t.get("seconds_per_epoch"), t.get("seconds"),
                            t.get("peak_rss_mb")] for t in results.get("training", [])], digits=1)


def clip_table(results: dict) -> str:
    """CLIP images/s per runtime and batch, with the ratio to torch eager of the same source and batch."""
    rows = results.get("clip", [])
    eager = {(r["source"], r["batch"]): r["images_per_s"] for r in rows if r["runtime"] == "torch eager"}
    out = [[r["source"], r["runtime"], r["batch"], r["images_per_s"],
            ratio(r["images_per_s"], eager.get((r["source"], r["batch"])))] for r in rows]
    return markdown_table(["CLIP", "runtime", "batch", "images/s", "x torch eager"], out)


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None when either is missing or the reference is 0."""
    if value is None or not reference:
        return None
    return value / reference


def int8_table(results: dict) -> str:
    return markdown_table(["model", "flavour", "batch", "fp32 ms", "int8 ms", "speed-up", "gate passed"],
                          [[r["model"], r["flavour"], r["batch"], r["fp32_ms"], r["int8_ms"], r["speedup"],
                            r.get("passed")] for r in results.get("int8", [])])


def head_table(results: dict) -> str:
    return markdown_table(["batch", "window", "ORT ms/call", "ORT ms/window", "torch ms/call"],
                          [[r["batch"], r["window"], r["onnxruntime_ms"], r["onnxruntime_ms_per_window"],
                            r.get("torch_ms")] for r in results.get("head", [])])


def edge_table(results: dict) -> str:
    rows = results.get("edge", [])
    single = {r["clip"]: r["encoded_fps"] for r in rows if r["cameras"] == 1}
    out = [[r["clip"], r["cameras"], r["encoded_fps"], ratio(r["encoded_fps"], single.get(r["clip"])),
            r.get("camera_fps_supported"), *(r.get("ms_per_item", {}).get(s) for s in STAGES)] for r in rows]
    return markdown_table(["CLIP", "cameras", "encoded frames/s", "x 1 camera", "camera fps supported",
                           *(f"{s} ms" for s in STAGES)], out)


def precision_label(row: dict) -> str:
    """A soak row's precision: 'int8' when every model ran INT8, else the ones that did ('int8 (head)')."""
    precision = row.get("precision", "fp32")
    models = row.get("int8_models") or []
    if precision == "int8" and models and set(models) != {"clip_visual", "head"}:
        return f"int8 ({', '.join(models)})"
    return precision


def soak_table(results: dict) -> str:
    """Per CLIP source, bundle, precision and camera count: memory slope, drops, queue depth, snippets, real time."""
    rows = results.get("soak", {}).get("rows", [])
    return markdown_table(["CLIP", "bundle", "precision", "cameras", "RSS MB/min", "dropped %", "max queue",
                           "snippets/s scored", "snippets/s produced", "real time"],
                          [[r["clip"], r.get("bundle"), precision_label(r), r["cameras"], r.get("rss_slope_mb_per_min"),
                            _percent(r.get("drop_fraction")), r.get("max_queue_depth"), r.get("snippets_per_s"),
                            r.get("produced_snippets_per_s"), r.get("real_time")] for r in rows])


def _soak_name(best: dict) -> str:
    bundle = best.get("bundle")
    return f"{best['clip']} {best['precision']}" + (f" ({bundle})" if bundle and bundle != "random weights" else "")


def soak_lines(results: dict) -> list[str]:
    s = results.get("soak")
    if not s or not (s.get("rows") or s.get("notes")):
        return ["not measured in this run"]
    return [f"{fmt(s.get('seconds'), 0)} s per camera count on looped copies of {s.get('video')} paced at its "
            f"frame rate (capture queue {s.get('queue_size')}, clip batch {s.get('batch')}), figures over the second "
            f"half; N holds real time when at most {fmt(_percent(s.get('max_drop')), 0)} % of the wanted frames are "
            "dropped and at least 90 % of the produced snippets are scored (or all but one per camera: those in "
            "progress). Camera counts stop at the first that fails.", "", soak_table(results), "",
            "Largest real-time camera count: " + (", ".join(f"{_soak_name(b)} **{b['cameras']}**"
                                                            for b in s.get("largest_real_time", [])) or "–"),
            *(f"- {note}" for note in s.get("notes", []))]


def alert_lines(results: dict) -> list[str]:
    a = results.get("alert")
    if not a:
        return ["not measured in this run"]
    return [f"- held-out anomalies {fmt(a.get('anomalies'), 0)}: hits {fmt(a.get('hits'), 0)}, misses "
            f"{fmt(a.get('misses'), 0)}, false alarms {fmt(a.get('false_alarms'), 0)}",
            f"- onset to alert: mean {fmt(a.get('latency_snippets_mean'), 1)} snippets "
            f"({fmt(a.get('latency_seconds_mean'), 1)} s of video), max {fmt(a.get('latency_snippets_max'), 1)} "
            f"snippets ({fmt(a.get('latency_seconds_max'), 1)} s)",
            *live_alert_lines(a.get("realtime") or {}),
            f"- events written {fmt(a.get('events_total'), 0)}, received over MQTT {fmt(a.get('events_over_mqtt'), 0)}"]


def live_alert_lines(live: dict) -> list[str]:
    if not live.get("videos"):
        return []
    return [f"- paced in real time (one held-out anomaly per class, one camera at a time): onset frame shown to "
            f"`start` received over MQTT, mean {fmt(live.get('latency_seconds_mean'), 2)} s, max "
            f"{fmt(live.get('latency_seconds_max'), 2)} s ({fmt(live.get('alerts'), 0)} of "
            f"{fmt(live.get('videos'), 0)} alerted)"]


def bound_lines(results: dict) -> list[str]:
    b = results.get("bound")
    if not b:
        return ["not measured in this run"]
    by = ", ".join(f"{k} {fmt(v, 1)}" for k, v in b.get("gemm_by_library", {}).items())
    return [f"- practical fp32 peak (best 2048^3 GEMM{f': {by}' if by else ''}): {fmt(b['gemm_gflops'], 1)} GFLOP/s "
            f"on all {results.get('machine', {}).get('cores')} cores, measured after the runs",
            f"- CLIP ViT-B/16 at 224: {fmt(b['clip_gflop_per_image'], 1)} GFLOP per image (17.6 GMAC, 1 MAC = 2 "
            f"FLOP) -> at most {fmt(b['images_per_s_at_peak'], 1)} images/s at that peak",
            f"- best measured ({fmt(b.get('best_runtime'))}): {fmt(b.get('best_images_per_s'))} images/s = "
            f"{fmt(b.get('achieved_gflops'), 1)} GFLOP/s = {fmt(_percent(b.get('fraction_of_peak')), 1)} % of "
            "the peak", *(["- the encoder already runs at this machine's GEMM rate (both figures taken on a shared, "
                            "loaded machine): only fewer operations (INT8, encode_every, a smaller encoder) make it "
                            "faster"] if (b.get("fraction_of_peak") or 0) > 0.8 else [])]


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def mode_note(results: dict) -> str:
    """What the accuracy rows of a reduced run are good for."""
    subset = results.get("test_subset", {})
    return (f"*{results.get('mode')} mode*: small training set, few epochs"
            + "".join(f", {v['anomalous']} anomalous + {v['normal']} normal {k} test videos" for k, v in subset.items())
            + ". Its accuracy rows (in the report) check the pipeline end to end; they do not rank the methods: "
            "the accuracy of the methods at scale is the full report's (`cplvad bench full`, below).")


def summary_rows(results: dict) -> list[tuple[str, str]]:
    """The headline figures, one (what, value) pair per line, for the printed table and the README."""
    rows: list[tuple[str, str]] = []
    for layout, table in results.get("accuracy", {}).items():
        if results.get("mode") != "full":  # a reduced run checks the pipeline; it must not read as a ranking
            rows.append((f"{layout} accuracy", f"{len(table)} models trained and scored (pipeline check, "
                                               "not a ranking: report.md)"))
            continue
        key = "auc" if layout == "ucf" else "ap"
        for name in ("MIL baseline", "stage 1 (video labels only)", "CPL-VAD teacher", "student offline",
                     "student streaming", "student INT8 streaming (gate subset)"):
            if name in table:
                r = table[name]
                rows.append((f"{layout} {name}", f"{key.upper()} {fmt(r.get(key))}, mAP avg {fmt(r.get('map_avg'))}"
                             f" (corrected {fmt(r.get('map_corrected_avg'))})"))
    for t in results.get("training", []):
        if t["stage"].startswith("CPL-VAD teacher"):
            rows.append((f"train {t['stage']}", f"{fmt(t.get('seconds_per_epoch'), 1)} s/epoch, peak RSS "
                                                f"{fmt(t.get('peak_rss_mb'), 0)} MB"))
    clip = results.get("clip", [])
    eager = {r["batch"]: r["images_per_s"] for r in clip if r["source"] == "random" and r["runtime"] == "torch eager"}
    for r in clip:
        if r["source"] == "random":
            x = ratio(r["images_per_s"], eager.get(r["batch"])) if r["runtime"] != "torch eager" else None
            rows.append((f"CLIP ViT-B/16 {r['runtime']} b{r['batch']}",
                         f"{fmt(r['images_per_s'])} images/s" + (f" (x{fmt(x)} torch eager)" if x else "")))
    for r in results.get("int8", []):
        if r["flavour"] == "u8s8" and r["batch"] == 8:
            rows.append((f"INT8 u8s8 {r['model']} b8", f"x{fmt(r['speedup'])} vs fp32"))
    for r in results.get("head", [])[:1]:
        rows.append((f"head b{r['batch']}", f"{fmt(r['onnxruntime_ms_per_window'])} ms/window (ORT)"))
    for r in results.get("edge", []):
        rows.append((f"edge {r['clip']} CLIP, {r['cameras']} cam", f"{fmt(r['encoded_fps'], 1)} encoded frames/s"))
    soak = results.get("soak", {})
    for b in soak.get("largest_real_time", []):
        mine = [r for r in soak.get("rows", []) if (r["clip"], r["precision"], r.get("bundle"), r["cameras"])
                == (b["clip"], b["precision"], b.get("bundle"), b["cameras"])]
        slope = f", RSS {fmt(mine[0].get('rss_slope_mb_per_min'))} MB/min" if mine else ""
        rows.append((f"soak {_soak_name(b)}", f"{b['cameras']} camera(s) in real time{slope}" if b["cameras"]
                     else "no camera count held real time"))
    a = results.get("alert")
    if a and not a.get("hits"):
        rows.append(("alert latency", f"no alert on the {fmt(a.get('anomalies'), 0)} held-out anomalies "
                                      f"({fmt(a.get('events_total'), 0)} events)"))
    elif a:
        live = a.get("realtime") or {}
        wall = (f", {fmt(live['latency_seconds_mean'], 1)} s onset to MQTT in real time"
                if live.get("latency_seconds_mean") is not None else "")
        rows.append(("alert latency", f"{fmt(a.get('latency_snippets_mean'), 1)} snippets "
                                      f"({fmt(a.get('latency_seconds_mean'), 1)} s of video{wall}), hits "
                                      f"{fmt(a.get('hits'), 0)}/{fmt(a.get('anomalies'), 0)}"))
    b = results.get("bound")
    if b and b.get("fraction_of_peak") is not None:
        rows.append(("ViT-B/16 vs GEMM peak", f"{fmt(_percent(b['fraction_of_peak']), 1)} % of "
                                              f"{fmt(b['gemm_gflops'], 0)} GFLOP/s"))
    return rows


def summary_text(results: dict) -> str:
    rows = summary_rows(results)
    width = max((len(w) for w, _ in rows), default=10)
    failed = [s["name"] for s in results.get("steps", []) if not s["ok"]]
    lines = ["=" * 78, f"CPL-VAD Edge bench ({results.get('mode')}, {fmt(results.get('total_seconds'), 0)} s)",
             "=" * 78, *(f"{w:<{width}}  {v}" for w, v in rows)]
    if failed:
        lines.append(f"FAILED stages: {', '.join(failed)}")
    return "\n".join([*lines, "=" * 78])


def report_markdown(results: dict, plots: Sequence[str] = ()) -> str:
    m = results.get("machine", {})
    plan = results.get("plan", {})
    parts = [f"# CPL-VAD Edge benchmark ({results.get('mode')})", "",
             f"Created {results.get('created')} on {m.get('cpu')} ({m.get('cores')} cores, load "
             f"{m.get('load_average_1min')}), torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}; "
             f"total {fmt(results.get('total_seconds'), 0)} s. Full mode's expected time: "
             f"{plan.get('expected_full', '–')}.", "",
             "Accuracy is measured on the feature benchmark generated from the real layouts (`train.data.synth`, "
             f"scale {plan.get('scale')}); the papers' rows are on the real features and are a "
             f"{PUBLISHED_NOTE}: they give the scale of the figures, not a comparison. AUC / AP in %, mAP in % "
             "(IoU 0.1..0.5; *corrected* leaves out the always-zero normal class). The INT8 rows are the "
             "calibration gate's streaming scores on its subset of test videos, beside the float head on the same "
             "subset.", ""]
    if results.get("mode") != "full":
        parts += [mode_note(results), ""]
    for layout in results.get("accuracy", {}):
        parts += [f"## Accuracy: {LAYOUT_NAMES.get(layout, layout)}", "", accuracy_table(results, layout), ""]
        events = results.get("events", {}).get(layout)
        if events:
            parts += [f"Student streaming events (frame level): precision {fmt(events.get('precision'), 3)}, recall "
                      f"{fmt(events.get('recall'), 3)}, F1 {fmt(events.get('f1'), 3)}, {events.get('events')} events.",
                      ""]
    parts += ["## Training", "", training_table(results), "",
              "## CLIP image encoder", "", clip_table(results), "",
              "`random` is the real-size ViT-B/16 on random weights (the speed is real), `tiny` a small CLIP.", "",
              "## INT8 (ONNX Runtime, same run)", "", int8_table(results), "",
              "## Student head per window", "", head_table(results), "",
              "## Device loop (edge.pipeline), per camera count", "", edge_table(results), "",
              "## Soak (bench/soak.py): cameras paced in real time", "", *soak_lines(results), "",
              "## Alert latency (edge/run.py -> MQTT, rendered scenes with known onsets)", "", *alert_lines(results),
              "", "## Physical bound", "", *bound_lines(results), ""]
    if plots:
        parts += ["## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    failed = [s for s in results.get("steps", []) if not s["ok"]]
    if failed:
        parts += ["## Failed stages", "", *(f"- {s['name']}: {s['error']}" for s in failed), ""]
    parts += ["## Summary", "", "```", summary_text(results), "```", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------- plots


def plot_curves(curves: dict[str, dict], title: str, path: Path) -> Path:
    """ROC and PR curves side by side, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in curves.items():
        roc.plot(c["fpr"], c["tpr"], lw=1.3, label=name)
        pr.plot(c["recall"], c["precision"], lw=1.3, label=name)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {title}")
    pr.set(xlabel="recall", ylabel="precision", title=f"PR, {title}", ylim=(0, 1.02))
    roc.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timelines(timelines: list[dict], title: str, path: Path) -> Path:
    """Score timelines of a few test videos over their ground truth, one panel per video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(timelines), 1, figsize=(10, 2.4 * len(timelines)), squeeze=False)
    for ax, t in zip(axes[:, 0], timelines):
        ax.fill_between(range(len(t["gt"])), 0, t["gt"], step="post", color="tab:red", alpha=0.15,
                        label="ground truth")
        for name, scores in t["scores"].items():
            ax.plot(scores, lw=1.2, label=name)
        ax.set(ylim=(-0.02, 1.02), ylabel="anomaly", title=f"{t['video']} ({title})")
    axes[-1, 0].set_xlabel("snippet (16 frames)")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_edge(rows: list[dict], path: Path) -> Path:
    """Encoded frames/s and per-stage ms against the camera count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (fps, stages) = plt.subplots(1, 2, figsize=(10, 3.6))
    for clip in sorted({r["clip"] for r in rows}):
        mine = [r for r in rows if r["clip"] == clip]
        cams = [r["cameras"] for r in mine]
        fps.plot(cams, [r["encoded_fps"] for r in mine], marker="o", label=f"{clip} CLIP")
        for stage in STAGES:
            stages.plot(cams, [r.get("ms_per_item", {}).get(stage) or 0 for r in mine], marker=".",
                        label=f"{clip} {stage}")
    fps.set(xlabel="cameras", ylabel="encoded frames/s (all cameras)", title="device loop throughput")
    stages.set(xlabel="cameras", ylabel="ms per item", title="per-stage ms", yscale="symlog")
    fps.legend(fontsize=7)
    stages.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def make_plots(results: dict, out: Path) -> list[str]:
    """Every plot the dict has data for; paths relative to ``out``."""
    written = []
    for layout, curves in results.get("curves", {}).items():
        if curves:
            written.append(plot_curves(curves, LAYOUT_NAMES.get(layout, layout), out / f"pr_roc_{layout}.png"))
    for layout, timelines in results.get("timelines", {}).items():
        if timelines:
            written.append(plot_timelines(timelines, LAYOUT_NAMES.get(layout, layout), out / f"timelines_{layout}.png"))
    if results.get("edge"):
        written.append(plot_edge(results["edge"], out / "edge_fps.png"))
    return [p.name for p in written]


# ----------------------------------------------------------------------------------------------- outputs


def write_report(results: dict, out: Path) -> str:
    """Write ``report.md`` and the plots into ``out``; returns the summary table (for printing)."""
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(results, out)
    (out / "report.md").write_text(report_markdown(results, plots))
    log.info("wrote %s (%d plots)", out / "report.md", len(plots))
    return summary_text(results)


def readme_block(results: dict, report: Path | str) -> str:
    """The README's results section: the accuracy tables and the summary, with a link to the full report."""
    m = results.get("machine", {})
    parts = [f"Last `cplvad bench --{results.get('mode')}` ({results.get('created')}, {m.get('cores')} cores "
             f"of {m.get('cpu')}); full report: [{report}/report.md]({report}/report.md). Our rows are on the "
             f"generated benchmark; the papers' rows are a {PUBLISHED_NOTE}.", ""]
    if results.get("mode") != "full":  # the accuracy tables of a reduced run stay in its report, unranked
        parts += [mode_note(results), ""]
    else:
        for layout in results.get("accuracy", {}):
            parts += [f"**{LAYOUT_NAMES.get(layout, layout)}**", "", accuracy_table(results, layout), ""]
    parts += ["```", summary_text(results), "```"]
    return "\n".join(parts)


def markers(name: str) -> tuple[str, str]:
    """The README comment pair around a generated block: ``<!-- name:start -->``, ``<!-- name:end -->``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


START, END = markers("results")


def replace_block(text: str, block: str, name: str = "results") -> str:
    """``text`` with everything between the ``name`` markers replaced by ``block``; for ``results`` the markers
    are appended (under '## Results') if absent, for other blocks they must be there."""
    start, end = markers(name)
    if start not in text or end not in text:
        if name != "results":
            raise ValueError(f"README has no {start} ... {end} block")
        return text.rstrip("\n") + f"\n\n## Results\n\n{start}\n{block}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    if start in tail or end in tail:
        raise ValueError(f"README has more than one {name} block: expected one {start} ... {end} pair")
    return f"{head}{start}\n{block}\n{end}{tail}"


def update_readme(readme: Path, results: dict, report: Path | str) -> None:
    readme.write_text(replace_block(readme.read_text(), readme_block(results, report)))
    log.info("updated the results block of %s", readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a bench.run result folder (with results.json)")
    parser.add_argument("--readme", type=Path, default=None, help="also rewrite this README's results block")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = args.results / "results.json"
    if not path.is_file():
        parser.error(f"{path} not found: run cplvad bench first")
    results = json.loads(path.read_text())
    print(write_report(results, args.results))
    if args.readme:
        update_readme(args.readme, results, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
