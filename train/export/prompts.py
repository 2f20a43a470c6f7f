"""Recompute the text cache for a new category list with the teacher's learned prompt tokens (no retraining).

    cplvad prompts --run RUN --classes "normal,fighting,...,falling" --out bundle/text_embeddings.npz

RUN is a teacher run (``teacher.pt``) or a student run (whose checkpoint names its teacher). The prompts
``[SOT] a video of the <class> [ctx] [LEVEL_i] [NORMAL|ABNORMAL] [EOT]`` run through the frozen CLIP text encoder
with the learned context, level and normality tokens; the first class is the normal one. The cache keeps the
student's levels (those of the bundle that ``--out`` is in, else of the student run, else all the teacher's).
When ``--out`` is inside a bundle, its manifest gets the new classes, the text hash and the file's sha256, and the
bundle is re-loaded to check it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from edge.bundle import MANIFEST, TextFile, parse_manifest, write_manifest
from edge.configfile import run_main
from train.models.cplvad import CPLVADConfig
from train.models.text import PromptLearner, TextEmbeddings, save_text_embeddings, text_embeddings

log = logging.getLogger(__name__)

PROMPT_PREFIX = "prompts."


def teacher_checkpoint(run: Path) -> tuple[Path, int | None]:
    """(teacher.pt, the student's levels or None) for a teacher or a student run folder."""
    if (run / "teacher.pt").is_file():
        return run / "teacher.pt", None
    if (run / "student.pt").is_file():
        ckpt = torch.load(run / "student.pt", map_location="cpu", weights_only=True)
        teacher = Path(ckpt["teacher"]) / "teacher.pt"
        if not teacher.is_file():
            raise FileNotFoundError(f"{run / 'student.pt'} names the teacher run {ckpt['teacher']}, which has no "
                                    "teacher.pt; pass the teacher run with --run")
        return teacher, int(ckpt["config"]["num_levels"])
    raise FileNotFoundError(f"{run}: neither teacher.pt nor student.pt; expected a train.training.teacher or train.training.distill run")


def load_prompts(teacher_pt: Path, class_names: Sequence[str]) -> PromptLearner:
    """The teacher's PromptLearner (learned tokens from the checkpoint) for ``class_names``."""
    ckpt = torch.load(teacher_pt, map_location="cpu", weights_only=True)
    cfg = CPLVADConfig(**ckpt["config"])
    if cfg.text_source is None:
        raise ValueError(f"{teacher_pt}: the teacher has no prompt learner (text_source=None)")
    prompts = PromptLearner(class_names, cfg.num_levels, cfg.text_source, cfg.num_ctx, cfg.text_seed)
    learned = {k[len(PROMPT_PREFIX):]: v for k, v in ckpt["model"].items() if k.startswith(PROMPT_PREFIX)}
    missing, unexpected = prompts.load_state_dict(learned, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(f"{teacher_pt}: prompt tokens do not match: missing {missing}, unexpected {unexpected}")
    return prompts.eval()


def recompute(run: str | Path, class_names: Sequence[str], out: str | Path, levels: int | None = None) -> TextEmbeddings:
    """Write the text cache for ``class_names`` to ``out``; update the bundle around ``out`` if there is one."""
    run, out = Path(run), Path(out)
    names = tuple(c.strip() for c in class_names if c.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"classes {list(class_names)}: expected at least two distinct names, the normal class first")
    teacher_pt, student_levels = teacher_checkpoint(run)
    bundle_manifest = out.parent / MANIFEST
    manifest = (parse_manifest(json.loads(bundle_manifest.read_text()), where=str(bundle_manifest))
                if bundle_manifest.is_file() else None)
    levels = levels or (manifest.levels if manifest else None) or student_levels
    prompts = load_prompts(teacher_pt, names)
    emb = text_embeddings(prompts, names)
    if levels is not None:
        if levels > emb.embeddings.shape[0]:
            raise ValueError(f"{levels} levels asked; the teacher has {emb.embeddings.shape[0]}")
        emb = TextEmbeddings(names, emb.embeddings[:levels].copy(), f"{emb.hash}-l{levels}", emb.source)
    save_text_embeddings(out, emb)
    if manifest is not None:
        updated = manifest.model_copy(update={"classes": names, "text_embeddings": TextFile(file=out.name,
                                                                                             hash=emb.hash)})
        write_manifest(out.parent, updated, rehash=[out.name])
        log.info("updated %s: %d classes", bundle_manifest, len(names))
    return emb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplvad prompts", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="teacher or student run folder")
    parser.add_argument("--classes", required=True, help="comma-separated class names, the normal class first")
    parser.add_argument("--out", required=True, type=Path, help="text_embeddings.npz to write (in a bundle: updated)")
    parser.add_argument("--levels", type=int, default=None, help="levels to keep (default: the bundle's / student's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        emb = recompute(args.run, args.classes.split(","), args.out, args.levels)
    except (FileNotFoundError, ValueError) as err:  # the user's run, classes or bundle
        log.error("%s", err)
        return 2
    log.info("wrote %s: %d classes x %d levels in %.1f s", args.out, len(emb.classes), emb.embeddings.shape[0],
             time.perf_counter() - start)
    return 0


if __name__ == "__main__":  # an alias of `cplvad prompts`
    raise SystemExit(run_main(main, prog="cplvad prompts"))
