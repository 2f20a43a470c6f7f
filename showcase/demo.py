"""End to end on one machine, with no real CLIP weights: `make demo` (``cplvad demo [--fast]``).

1. render street scenes with known anomalies (``showcase.scenes``): arson, fighting, explosion, and normal traffic;
2. extract their snippet features through the device's own path (``cplvad extract``) with the
   real-size ViT-B/16 on random weights (``--fast``: a tiny CLIP);
3. write a dataset in the release layout (train/test lists, frame and segment ground truth of the held-out videos);
4. train the CPL-VAD teacher (``cplvad train``), distil the causal student (``cplvad distill``), export the bundle
   (``cplvad export``);
5. start a local mosquitto (or use ``--mqtt-host/--mqtt-port``), subscribe, run ``cplvad run`` on the held-out
   rendered videos (and, with ``--samples``, on two real sample videos), print events and stats as they arrive;
6. end with a summary: events against the rendered ground truth (hits, misses, false alarms, category accuracy,
   alert latency), frames/s and per-stage ms.

Every step is cached by its output, so a second run starts at the edge in seconds; ``--fresh`` starts over.
Each step is the same command a user types; it is printed before it runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from edge.configfile import run_main
from showcase.scenes import FPS as SCENE_FPS
from train.data.release import save_ground_truth
from train.data.samples import sample_videos
from train.paths import PROJECT_ROOT

log = logging.getLogger("demo")

FRAMES = 16  # per snippet


@dataclass(frozen=True)
class DemoPlan:
    work: Path
    clip: str  # CLIP source for extraction and export
    videos: int
    frames: int
    encode_every: int
    teacher_overrides: tuple[str, ...]
    distill_overrides: tuple[str, ...]

    @classmethod
    def make(cls, work: Path, fast: bool) -> DemoPlan:
        if fast:
            return cls(work, "tiny", 36, 192, 4, ("optim.epochs_stage1=20", "optim.epochs_stage2=20"),
                       ("optim.epochs=20",))
        return cls(work, "random", 48, 256, 16, (), ())


def step(title: str, args: list[str], done: Path | None = None, env: dict | None = None) -> None:
    """Run one stage's command unless its output ``done`` exists."""
    if done is not None and done.exists():
        log.info("[cached] %s (%s)", title, done)
        return
    log.info("[run] %s\n      $ %s", title, " ".join(args))
    started = time.perf_counter()
    result = subprocess.run(args, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise SystemExit(f"demo: step '{title}' failed with exit code {result.returncode}")
    log.info("[done] %s in %.0f s", title, time.perf_counter() - started)


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def sets(*overrides: str) -> list[str]:
    """``key=value`` overrides as ``--set key=value`` arguments."""
    return [arg for override in overrides for arg in ("--set", override)]


# ----------------------------------------------------------------------------------------------- dataset


def read_list(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as f:
        return [(row["path"], row["label"]) for row in csv.DictReader(f)]


def write_dataset(scenes: Path, features: Path, out: Path) -> None:
    """Release-layout dataset from the extracted features and the scenes' ground truth."""
    gt = json.loads((scenes / "gt.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(features / "train" / "list.csv", out / "train.csv")
    rows = read_list(features / "test" / "list.csv")
    shutil.copy(features / "test" / "list.csv", out / "test.csv")
    frames, segments, labels = [], [], []
    for path, _label in rows:
        name = Path(path).name.rsplit("__", 1)[0]
        info = gt["videos"][name] if "videos" in gt else gt[name]
        n = np.load(path, mmap_mode="r").shape[0] * FRAMES
        truth = np.zeros(n, np.float32)
        if info.get("onset_frame") is not None:
            onset, offset = int(info["onset_frame"]), min(int(info["offset_frame"]), n)
            truth[onset:offset] = 1.0
            segments.append([[onset, offset]])
            labels.append([info["label"]])
        else:
            segments.append([[0, n]])
            labels.append(["A"])
        frames.append(truth)
    save_ground_truth(out, np.concatenate(frames), segments, labels)


# ----------------------------------------------------------------------------------------------- broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise SystemExit("demo: mosquitto not found (apt-get install mosquitto), or pass --mqtt-host/--mqtt-port")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"demo: mosquitto did not start on port {port}")


@dataclass
class Received:
    events: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    arrivals: dict[tuple[str, str], float] = field(default_factory=dict)  # (event_id, type) -> wall time


def subscribe(host: str, port: int, prefix: str, received: Received) -> object:
    import paho.mqtt.client as mqtt

    viewer_id = f"demo-viewer-{os.getpid()}-{prefix.replace('/', '-')}"  # one per prefix: a shared id would flap
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=viewer_id)

    def on_connect(client, userdata, flags, reason, properties) -> None:
        client.subscribe(f"{prefix}/#", qos=1)

    def on_message(client, userdata, message) -> None:
        topic = message.topic
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = message.payload.decode(errors="replace")
        if topic.endswith("/events"):
            received.arrivals[(payload["event_id"], payload["type"])] = time.time()
            received.events.append(payload)
            log.info("EVENT %-5s %-28s %-10s score %.2f  frames %s..%s", payload["type"], payload["camera"][:28],
                     payload["category"], payload["score"], payload["frame_start"], payload["frame_end"])
        elif topic.endswith("/stats"):
            received.stats.append(payload)
            log.info("STATS %s", json.dumps(payload)[:200])
        elif topic.endswith("/available"):
            log.info("AVAILABLE %s", payload)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    return client


# ----------------------------------------------------------------------------------------------- summary


def matching_starts(starts: list[dict], info: dict, tolerance: int = 2 * FRAMES) -> list[dict]:
    """The ``start`` events that overlap a rendered anomaly window (within ``tolerance`` frames), first
    detected first."""
    onset, offset = int(info["onset_frame"]), int(info["offset_frame"])
    inside = [e for e in starts if e["frame_start"] <= offset + tolerance and e["frame_detected"] >= onset - tolerance]
    return sorted(inside, key=lambda e: e["frame_detected"])


def score_events(events: list[dict], gt: dict, tolerance: int = 2 * FRAMES) -> dict:
    """Start events against the rendered ground truth, per held-out video (camera name = video name)."""
    starts: dict[str, list[dict]] = {}
    for e in events:
        if e["type"] == "start":
            starts.setdefault(e["camera"], []).append(e)
    hits = misses = false_alarms = right_category = 0
    latencies: list[float] = []
    for name, info in gt.items():
        mine = starts.get(name, [])
        onset = info.get("onset_frame")
        if onset is None:
            false_alarms += len(mine)
            continue
        inside = matching_starts(mine, info, tolerance)
        false_alarms += len(mine) - len(inside[:1])
        if not inside:
            misses += 1
            continue
        hits += 1
        first = inside[0]
        right_category += first["category"].lower() == info["label"].lower()
        latencies.append(max(first["frame_detected"] - onset, 0) / FRAMES)
    return {"anomalies": hits + misses, "hits": hits, "misses": misses, "false_alarms": false_alarms,
            "category_accuracy": right_category / hits if hits else None,
            "latency_snippets_mean": float(np.mean(latencies)) if latencies else None,
            "latency_snippets_max": float(np.max(latencies)) if latencies else None}


def realtime_latency(events: list[dict], arrivals: dict[tuple[str, str], float], gt: dict,
                     fps: float = SCENE_FPS) -> dict:
    """Seconds from the rendered onset to the arrival of the first matching ``start`` over MQTT, for streams
    paced in real time (the event's ``start_time`` is the wall time of its ``frame_start``)."""
    seconds: list[float] = []
    for name, info in gt.items():
        starts = matching_starts([e for e in events if e["type"] == "start" and e["camera"] == name], info)
        if not starts:
            continue
        first = starts[0]
        shown = datetime.fromisoformat(first["start_time"].replace("Z", "+00:00")).timestamp()
        onset_time = shown + (info["onset_frame"] - first["frame_start"]) / fps
        seconds.append(arrivals[(first["event_id"], "start")] - onset_time)
    return {"videos": len(gt), "alerts": len(seconds),
            "latency_seconds_mean": round(float(np.mean(seconds)), 2) if seconds else None,
            "latency_seconds_max": round(float(np.max(seconds)), 2) if seconds else None}


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad demo", description="CPL-VAD Edge end to end on rendered scenes and sample videos")
    parser.add_argument("--fast", action="store_true", help="tiny CLIP and fewer scenes (~2 minutes)")
    parser.add_argument("--out", "--work", dest="work", type=Path, default=None,
                        help="artifact folder (default demo/ or demo-fast/)")
    parser.add_argument("--fresh", action="store_true", help="discard cached artifacts first")
    parser.add_argument("--mqtt-host", default=None, help="use this broker instead of starting one")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--samples", action="store_true",
                        help="also play two real sample videos (Intel, CC-BY-4.0; fetched once into the cache, "
                             "skipped when offline)")
    parser.add_argument("--no-realtime", action="store_true",
                        help="skip the real-time run (one held-out anomaly per class, paced at 16 frames/s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    work = args.work or PROJECT_ROOT / ("demo-fast" if args.fast else "demo")
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    plan = DemoPlan.make(work, args.fast)
    started = time.perf_counter()

    scenes = work / "scenes"
    step("render scenes", py("-m", "showcase.scenes", "--out", str(scenes), "--seed", "0", "--videos", str(plan.videos),
                             "--frames", str(plan.frames)), scenes / "gt.json")
    features = work / "features"
    for split in ("train", "test"):
        step(f"extract {split} features (CLIP {plan.clip})",
             py("-m", "cplvad", "extract", "--videos", str(scenes / f"{split}.txt"), "--labels",
                str(scenes / "labels.csv"), "--out", str(features / split), "--clip", plan.clip, "--backend", "auto",
                "--encode-every", str(plan.encode_every), "--crops", "1"),
             features / split / "list.csv")
    dataset = work / "dataset"
    if not (dataset / "gt_label.npy").exists():
        write_dataset(scenes, features, dataset)
    teacher, student, bundle = work / "teacher", work / "student", work / "bundle"
    step("train the teacher", py("-m", "cplvad", "train", "--config", "configs/train/demo.yaml", "--data", str(dataset),
                                 "--out", str(teacher), *sets(*plan.teacher_overrides)), teacher / "metrics.json")
    step("distil the student", py("-m", "cplvad", "distill", "--teacher", str(teacher), "--config",
                                  "configs/distill/demo.yaml", "--out", str(student), *sets(*plan.distill_overrides)),
         student / "student.pt")
    step("export the bundle", py("-m", "cplvad", "export", "--run", str(student), "--out", str(bundle), "--clip",
                                 plan.clip, "--encode-every", str(plan.encode_every)), bundle / "manifest.json")

    broker = None
    host, port = args.mqtt_host, args.mqtt_port
    if host is None:
        broker, port = start_mosquitto(Path(tempfile.mkdtemp(prefix="cplvad-demo-")))
        host = "127.0.0.1"
    received = Received()
    device = "demo"
    viewer = subscribe(host, port, f"cplvad/{device}", received)
    gt_all = json.loads((scenes / "gt.json").read_text())
    gt_all = gt_all.get("videos", gt_all)
    held_out = [line.strip() for line in (scenes / "test.txt").read_text().splitlines() if line.strip()]
    cameras = [f"{Path(v).stem}={scenes / v}" for v in held_out]
    samples = sample_videos(fetch=True) if args.samples else []
    cameras += [str(p) for p in samples]
    jsonl = work / "events.jsonl"
    jsonl.unlink(missing_ok=True)

    def edge_command(device_name: str, cams: list[str], *extra: str) -> list[str]:
        command = [sys.executable, "-m", "cplvad", "run", "--bundle", str(bundle), "--mqtt-host", host, "--mqtt-port",
                   str(port), "--device-name", device_name, "--exit-when-done", "--set",
                   f"outbox.path={work / f'outbox-{device_name}.sqlite3'}", "--set", "stats.interval_s=5", *extra]
        for cam in cams:
            command += ["--camera", cam]
        return command

    # one held-out anomaly per class, again, paced at the scenes' frame rate as a live camera feeds it
    held_gt = {Path(v).stem: gt_all[Path(v).stem] for v in held_out}
    live = {}
    for name, info in held_gt.items():
        if info.get("onset_frame") is not None:
            live.setdefault(info["label"], name)
    live_received = Received()
    live_viewer = subscribe(host, port, f"cplvad/{device}-live", live_received)
    try:
        step(f"cplvad run on {len(cameras)} cameras", edge_command(device, cameras, "--jsonl", str(jsonl)))
        for name in ([] if args.no_realtime else sorted(live.values())):  # one at a time
            step(f"cplvad run --realtime on {name} (alert latency in seconds)",
                 edge_command(f"{device}-live", [f"{name}={scenes / 'videos' / name}.mp4"], "--realtime"))
        time.sleep(1.0)  # the last messages
    finally:
        live_viewer.loop_stop()  # type: ignore[attr-defined]
        viewer.loop_stop()  # type: ignore[attr-defined]
        if broker is not None:
            broker.terminate()
            broker.wait(5)

    events = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else received.events
    summary = score_events(events, held_gt)
    summary["events_total"] = len(events)
    summary["events_over_mqtt"] = len(received.events)
    summary["sample_video_events"] = sum(1 for e in events if e["type"] == "start" and e["camera"] not in held_gt)
    if not args.no_realtime:
        summary["realtime"] = realtime_latency(live_received.events, live_received.arrivals,
                                               {n: held_gt[n] for n in live.values()})
    if received.stats:
        summary["throughput"] = busiest_interval(received.stats)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, work)
    return 0


def busiest_interval(stats: list[dict]) -> dict:
    """Frames/s over all cameras and ms per item of each stage, from the stats message of the busiest interval
    (the last one, sent on close, may be nearly empty)."""
    best = max(stats, key=lambda m: sum(c.get("fps", 0.0) for c in m.get("cameras", {}).values()))
    return {"interval_s": best.get("interval_s"), "cameras": len(best.get("cameras", {})),
            "fps_total": round(sum(c.get("fps", 0.0) for c in best.get("cameras", {}).values()), 2),
            "ms_per_item": {n: round(st["ms_per_item"], 2) for n, st in best.get("stages", {}).items()
                            if st.get("calls")}}


def print_summary(s: dict, work: Path) -> None:
    lines = [
        "", "=" * 72, "CPL-VAD Edge demo summary", "=" * 72,
        f"held-out anomalies {s['anomalies']}: hits {s['hits']}, misses {s['misses']}, "
        f"false alarms {s['false_alarms']}",
        f"category accuracy (hits): {s['category_accuracy'] if s['category_accuracy'] is None else round(s['category_accuracy'], 3)}",
        f"alert latency (snippets after onset): mean {s['latency_snippets_mean']}, max {s['latency_snippets_max']}",
        *([f"alert latency in real time (onset to MQTT arrival, {rt['alerts']} of {rt['videos']} paced videos "
           f"alerted): mean {rt['latency_seconds_mean']} s, max {rt['latency_seconds_max']} s"]
          if (rt := s.get("realtime")) else []),
        f"events: {s['events_total']} written, {s['events_over_mqtt']} received over MQTT; "
        f"starts on the real sample videos: {s['sample_video_events']}",
    ]
    busy = s.get("throughput")
    if busy:
        stages = ", ".join(f"{n} {ms} ms" for n, ms in busy["ms_per_item"].items())
        lines.append(f"busiest {busy['interval_s']} s: {busy['fps_total']} frames/s over {busy['cameras']} cameras; "
                     f"per item: {stages or '-'}")
    lines += [f"total {s['seconds']} s; details in {work / 'summary.json'}", "=" * 72]
    print("\n".join(lines))


if __name__ == "__main__":  # an alias of `cplvad demo`
    raise SystemExit(run_main(main, prog="cplvad demo"))
