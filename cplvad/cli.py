"""``cplvad``: one command for every step, from a generated benchmark to events on the device.

    cplvad synth --layout ucf --out data/ucf
    cplvad train --config configs/train/ucf.yaml --set optim.epochs_stage1=2
    cplvad run --bundle bundle/ --camera 0

Every step takes ``--config FILE`` and ``--set KEY=VALUE`` (repeatable) where it has a config, ``--data DIR``
where it reads a dataset and ``--out DIR`` where it writes a folder; ``cplvad STEP --help`` lists its flags and its
config keys with their defaults. A user error (unknown key, bad value, missing file) is one line naming the key and
where it came from, exit code 2. Each step's module is imported only when that step runs, so ``cplvad run`` on a
device never imports torch or train/.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from edge.configfile import EXIT_USAGE, run_main

@dataclass(frozen=True)
class Step:
    module: str  # imported when the step runs; its main(argv) parses the step's arguments
    summary: str
    alternate: tuple[str, str] | None = None  # (flag, module): the flag selects another module's main
    parts: dict[str, str] | None = None  # NAME -> module: `cplvad STEP NAME ...` runs that module's main instead


BENCHMARKS = {  # cplvad bench NAME: one benchmark on its own (plain `cplvad bench --quick|--full` runs them all)
    "full": "bench.full", "report": "bench.report", "edge-fps": "bench.edge_fps", "soak": "bench.soak",
    "encoder-runtimes": "bench.encoder_runtimes", "clip-throughput": "bench.clip_throughput",
    "head-latency": "bench.head_latency", "int8-speed": "bench.int8_speed", "train-speed": "bench.train_speed",
    "snippet-policy": "bench.snippet_policy", "level-fusion": "bench.level_fusion",
}


STEPS: dict[str, Step] = {
    "synth": Step("train.data.synth", "generate a benchmark dataset with a real temporal layout"),
    "extract": Step("train.data.extract", "extract CLIP snippet features of your own videos"),
    "baseline": Step("train.training.baseline", "train and evaluate the MIL baseline"),
    "train": Step("train.training.teacher", "train the CPL-VAD teacher (stage 1, pseudo labels, stage 2)"),
    "distill": Step("train.training.distill", "distil a teacher run into the causal student, then evaluate it"),
    "eval": Step("train.evaluation.stream", "evaluate a run (teacher / student offline / streaming) or a scores "
                                            "file (--scores)", alternate=("--scores", "train.evaluation.evaluate")),
    "export": Step("train.export.bundle", "export a student run as a device bundle (ONNX + manifest)"),
    "prompts": Step("train.export.prompts", "recompute a bundle's text embeddings for a new class list"),
    "calibrate": Step("calibration.calibrate", "INT8 calibration of a bundle with an accuracy gate"),
    "engine": Step("calibration.engine", "build TensorRT engines of a bundle (on the Jetson)"),
    "run": Step("edge.run", "the device: cameras in, anomaly events out over MQTT"),
    "bench": Step("bench.run", "accuracy and speed benchmarks with a report (cplvad bench NAME: one of "
                               + ", ".join(BENCHMARKS) + ")", parts=BENCHMARKS),
    "samples": Step("train.data.samples", "fetch the optional sample videos (CC-BY-4.0) into the cache"),
    "demo": Step("showcase.demo", "end to end on rendered scenes: train, distil, export, run, summary"),
}


def usage() -> str:
    width = max(map(len, STEPS))
    lines = ["usage: cplvad STEP [--help] [ARGS...]", "", __doc__.split("\n")[0], "", "steps:"]
    lines += [f"  {name:<{width}}  {step.summary}" for name, step in STEPS.items()]
    lines += ["", "cplvad STEP --help shows the step's flags and config keys."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0 if args else EXIT_USAGE
    name, rest = args[0], args[1:]
    if name == "--version":
        from importlib.metadata import version

        sys.stdout.write(f"cplvad {version('cplvad-edge')}\n")
        return 0
    step = STEPS.get(name)
    if step is None:
        import difflib

        close = difflib.get_close_matches(name, STEPS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (steps: {', '.join(STEPS)})"
        sys.stderr.write(f"cplvad: error: unknown step {name!r}{hint}\n")
        return EXIT_USAGE
    flag, other = step.alternate or ("", "")
    chosen = other if flag and any(a == flag or a.startswith(flag + "=") for a in rest) else step.module
    if step.parts and rest and rest[0] in step.parts:
        chosen, rest, name = step.parts[rest[0]], rest[1:], f"{name} {rest[0]}"
    module = importlib.import_module(chosen)
    try:
        return run_main(module.main, rest, prog=f"cplvad {name}")
    except SystemExit as exit_:  # argparse: --help (0) and bad flags (2)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
