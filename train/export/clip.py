"""Export the CLIP image encoder to ONNX with a dynamic batch, then verify it against torch on real frames.

    python -m train.export.clip --clip SOURCE --out clip_visual.onnx

Opset 17: the first opset with LayerNormalization as one operator (TensorRT fuses it and the INT8 recipe keeps
it in float as one node), parsed by TensorRT 8.5+ (JetPack 5) and 10.x (JetPack 6), and run by ONNX Runtime
1.12+. The IR version is lowered to the smallest that opset 17 needs, so older runtimes load the file too.
The ONNX file carries its contract in ``metadata_props`` (CLIP source, random or not, preprocessing); a sidecar
``<out>.json`` adds the file's sha256, the versions and the verification figures.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
import transformers

from edge.backends import cosine_rows
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.bundle import file_sha256
from edge.preprocess import CLIP_INPUT_NAME, CLIP_OUTPUT_NAME, CLIP_SIZE, CLIP_VIT_B16, preprocess
from train.data.provenance import same_weights
from train.data.samples import sample_videos
from train.models.clip_source import describe, identity, is_random
from train.models.clip_visual import CLIPVisual, load_clip_visual

log = logging.getLogger(__name__)

OPSET = 17
MIN_COSINE = 0.9999  # per-image cosine, ONNX Runtime vs torch
MAX_REL_DIFF = 1e-3  # max |onnx - torch| / max |torch|


@dataclass(frozen=True)
class Verification:
    """ONNX Runtime vs torch on the same pixels."""

    images: int
    max_abs_diff: float
    max_rel_diff: float  # max_abs_diff / max |torch embedding|
    min_cosine: float
    mean_cosine: float

    @property
    def ok(self) -> bool:
        return self.min_cosine >= MIN_COSINE and self.max_rel_diff <= MAX_REL_DIFF


def sidecar_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def sample_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` real BGR frames spread over the sample videos (:mod:`train.data.samples`) when they are on this
    machine; noise frames when they are not."""
    videos = sample_videos()
    frames: list[np.ndarray] = []
    for i, video in enumerate(videos):
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = count // len(videos) + (i < count % len(videos))
        for index in np.linspace(0, max(total - 1, 0), wanted).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
        cap.release()
    if len(frames) < count:
        log.warning("sample videos not on this machine (python -m train.data.samples fetches them): verifying on "
                    "random noise frames")
        rng = np.random.default_rng(seed)
        frames += [rng.integers(0, 256, (432, 768, 3), dtype=np.uint8) for _ in range(count - len(frames))]
    return frames


def verify(model: CLIPVisual, onnx_path: str | Path, frames: list[np.ndarray]) -> Verification:
    """Compare ONNX Runtime with torch on ``frames``, run as one batch and as batch 1 (dynamic batch)."""
    pixels = preprocess(frames)  # [N, 3, 224, 224]
    with torch.inference_mode():
        ref = model(torch.from_numpy(pixels)).numpy()  # [N, 512]
    backend = OnnxRuntimeBackend(onnx_path)
    out = backend.run({CLIP_INPUT_NAME: pixels})[CLIP_OUTPUT_NAME]
    single = backend.run({CLIP_INPUT_NAME: pixels[:1]})[CLIP_OUTPUT_NAME]
    out_all, ref_all = np.concatenate([out, single]), np.concatenate([ref, ref[:1]])
    diff = float(np.abs(out_all - ref_all).max())
    cos = cosine_rows(out_all, ref_all)
    return Verification(images=len(frames), max_abs_diff=diff, max_rel_diff=diff / float(np.abs(ref).max()),
                        min_cosine=float(cos.min()), mean_cosine=float(cos.mean()))


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep the exporter's progress prints and warnings out of the log (they go to debug); it builds opset 18 and
    converts down, as intended."""
    chatter = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        log.debug("exporter output:\n%s", chatter.getvalue())


def export_onnx(model: CLIPVisual, out: str | Path, *, opset: int = OPSET, metadata: dict[str, str]) -> Path:
    """Write ``model`` as a single-file ONNX graph with a dynamic batch axis and ``metadata`` in metadata_props."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, CLIP_SIZE, CLIP_SIZE)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with quiet_exporter():
        torch.onnx.export(model, (example,), str(out), input_names=[CLIP_INPUT_NAME],
                          output_names=[CLIP_OUTPUT_NAME], opset_version=opset,
                          dynamic_shapes={"pixels": {0: batch}}, external_data=False, dynamo=True)
    proto = onnx.load(str(out))
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def export_clip(source: str | Path, out: str | Path, *, seed: int = 0, opset: int = OPSET,
                verify_frames: int = 8) -> dict:
    """Export, verify and describe the CLIP image encoder of ``source``; returns the sidecar's content.

    Raises RuntimeError when ONNX Runtime and torch disagree beyond the budget (MIN_COSINE, MAX_REL_DIFF).
    """
    start = time.perf_counter()
    model = load_clip_visual(source, seed=seed)
    ident = identity(source, seed)
    metadata = {
        "cplvad.model": "clip_visual",
        "cplvad.clip": describe(source),
        "cplvad.clip_identity": json.dumps(ident),
        "cplvad.clip_random": str(is_random(source)).lower(),
        "cplvad.preprocess": json.dumps(CLIP_VIT_B16.to_dict()),
    }
    path = export_onnx(model, out, opset=opset, metadata=metadata)
    check = verify(model, path, sample_frames(verify_frames))
    log.info("verify ONNX Runtime vs torch on %d real frames: max |diff| %.2e (relative %.2e), cosine min %.7f "
             "mean %.7f; budget: cosine >= %g, relative diff <= %g", check.images, check.max_abs_diff,
             check.max_rel_diff, check.min_cosine, check.mean_cosine, MIN_COSINE, MAX_REL_DIFF)
    if not check.ok:
        raise RuntimeError(f"{path}: ONNX Runtime disagrees with torch beyond the budget: {check}")
    sidecar = {
        "model": "clip_visual",
        "clip": describe(source),
        "random": is_random(source),
        "seed": seed if is_random(source) else None,
        "identity": ident,
        "file": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "opset": opset,
        "input": {"name": CLIP_INPUT_NAME, "shape": ["batch", 3, CLIP_SIZE, CLIP_SIZE], "dtype": "float32"},
        "output": {"name": CLIP_OUTPUT_NAME, "shape": ["batch", 512], "dtype": "float32"},
        "preprocess": CLIP_VIT_B16.to_dict(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnx": onnx.__version__},
        "verify": asdict(check),
    }
    sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    log.info("exported %s (%.1f MB, opset %d) in %.1f s; next: cplvad extract --backend onnx "
             "--onnx %s --clip %s --videos DIR --out DIR", path, sidecar["bytes"] / 1e6, opset,
             time.perf_counter() - start, path, source)
    return sidecar


def matches(onnx_path: str | Path, source: str | Path, seed: int = 0) -> bool:
    """Whether ``onnx_path`` is an intact export of ``source`` (per its sidecar), so it can be reused."""
    path, side = Path(onnx_path), sidecar_path(onnx_path)
    if not (path.is_file() and side.is_file()):
        return False
    info = json.loads(side.read_text())
    wanted_seed = seed if is_random(source) else None
    if not (info.get("clip") == describe(source) and info.get("seed") == wanted_seed):
        return False
    if "identity" in info:
        if not same_weights(info["identity"], identity(source, seed)):
            return False
    elif not is_random(source):  # an older export of real weights names no revision: export again
        return False
    return info.get("sha256") == file_sha256(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export.clip", description=__doc__.split("\n")[0])
    parser.add_argument("--clip", required=True, help="Hugging Face id (e.g. openai/clip-vit-base-patch16), local "
                                                      "Hugging Face CLIP folder, 'random' or 'tiny'")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write (sidecar: same name .json)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed for 'random' / 'tiny'")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    parser.add_argument("--verify-frames", type=int, default=8, help="real frames used for the check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        export_clip(args.clip, args.out, seed=args.seed, opset=args.opset, verify_frames=args.verify_frames)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
