"""CLIP image preprocessing in numpy + OpenCV: the one implementation shared by training, calibration and the device.

The reference is CLIP's own transform: resize the shorter side to 224 with PIL's bicubic filter, centre crop
224 x 224, RGB, scale by 1/255, normalise with CLIP's mean and std, channels first. PIL's bicubic widens its
kernel when it shrinks (antialiasing); OpenCV's INTER_CUBIC does not, so on the large downscales of camera
frames it aliases. INTER_AREA is the OpenCV filter closest to PIL there (tests/test_preprocess.py measures it
against ``transformers.CLIPImageProcessor`` on real 768x432 frames: mean |difference| about 0.25 grey levels,
against 0.61 for INTER_CUBIC and 0.42 for INTER_LINEAR). Downscales use INTER_AREA, upscales INTER_CUBIC.

OpenCV's INTER_AREA is fast only for integer shrink factors; a camera frame's factor rarely is one (768x432 ->
398x224 is 1.93), and its general path costs ~8 ms per frame on one core, more than decoding the frame. So an
``area`` downscale by a factor s is done in two steps: INTER_LINEAR up to k = ceil(s) times the target size (an
enlargement: nothing is skipped), then the exact k x k box average (OpenCV's integer fast path): each output pixel
is still the average over its s x s source footprint, with the linear interpolation's slight smoothing on top.
~1 ms per frame; it differs from the one-step INTER_AREA by ~0.1 grey levels and matches the reference as well
(tests/test_preprocess.py).

Frames come in as OpenCV gives them: ``uint8`` arrays ``[H, W, 3]`` in BGR order, of any size.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # RGB, on [0, 1] pixels
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The CLIP visual model's interface (the ONNX export boundary): pixels [N,3,224,224] -> image_embeds [N,512].
CLIP_INPUT_NAME = "pixels"
CLIP_OUTPUT_NAME = "image_embeds"

FILTERS: dict[str, int] = {"area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}
PIPELINE = "clip-center-crop"  # BGR -> RGB, shorter side -> size, centre crop, /255, mean/std, NCHW


@dataclass(frozen=True)
class PreprocessSpec:
    """What turns a frame into model input; the bundle manifest records it and the device checks it."""

    pipeline: str = PIPELINE  # the fixed sequence of steps (module docstring)
    size: int = CLIP_SIZE  # shorter side after resizing = side of the square crop
    mean: tuple[float, float, float] = CLIP_MEAN  # per RGB channel, on [0, 1] pixels
    std: tuple[float, float, float] = CLIP_STD
    downscale: str = "area"  # OpenCV filter when shrinking (closest to PIL's antialiased bicubic)
    upscale: str = "cubic"  # OpenCV filter when enlarging

    def __post_init__(self) -> None:
        if self.pipeline != PIPELINE:
            raise ValueError(f"preprocess pipeline {self.pipeline!r} is not implemented; expected {PIPELINE!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"preprocess size must be a positive integer, got {self.size!r}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if len(value) != 3:
                raise ValueError(f"preprocess {key} needs 3 values (R, G, B), got {value!r}")
            object.__setattr__(self, key, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ValueError(f"preprocess std must be > 0, got {self.std!r}")
        for key in ("downscale", "upscale"):
            if getattr(self, key) not in FILTERS:
                raise ValueError(f"preprocess {key} {getattr(self, key)!r} unknown; expected one of {sorted(FILTERS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for manifests (tuples as lists)."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "preprocess spec") -> PreprocessSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def mismatches(self, other: PreprocessSpec) -> list[str]:
        """Human-readable differences, empty when both specs give the same pixels."""
        return [f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def check_same(self, expected: PreprocessSpec, *, where: str) -> None:
        """Raise when ``self`` (e.g. from a bundle manifest) differs from ``expected`` (what runs here)."""
        diff = self.mismatches(expected)
        if diff:
            raise ValueError(f"{where}: preprocessing differs from this runtime's ({'; '.join(diff)}); "
                             f"re-export the bundle with this version's preprocessing")


CLIP_VIT_B16 = PreprocessSpec()


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side = ``size``; the longer one scaled and truncated, as CLIP does."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def center_crop_offset(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the centred ``size`` x ``size`` window; odd margins put the extra pixel at the bottom/right."""
    return (height - size) // 2, (width - size) // 2


def check_frame(frame: np.ndarray, *, where: str = "frame") -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"{where}: expected a uint8 BGR image [H, W, 3], got {got}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{where}: empty image {frame.shape}")


def resize_shorter_side(frame: np.ndarray, size: int, spec: PreprocessSpec = CLIP_VIT_B16) -> np.ndarray:
    """[H, W, 3] uint8 -> [h, w, 3] uint8 with min(h, w) = ``size``."""
    height, width = frame.shape[:2]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) == (height, width):
        return frame
    shrinking = new_h * new_w < height * width
    if shrinking and spec.downscale == "area":
        return area_downscale(frame, new_h, new_w)
    flag = FILTERS[spec.downscale if shrinking else spec.upscale]
    return cv2.resize(frame, (new_w, new_h), interpolation=flag)


def area_downscale(frame: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """[H, W, C] -> [new_h, new_w, C] box average: INTER_LINEAR to k x the target (k = ceil of the shrink
    factor), then OpenCV's fast k x k INTER_AREA (module docstring)."""
    height, width = frame.shape[:2]
    k = int(np.ceil(max(height / new_h, width / new_w)))
    big = cv2.resize(frame, (new_w * k, new_h * k), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(big, (new_w, new_h), interpolation=cv2.INTER_AREA)


def center_crop(frame: np.ndarray, spec: PreprocessSpec = CLIP_VIT_B16, *, where: str = "frame") -> np.ndarray:
    """BGR uint8 [H, W, 3] -> the model's view of it, still BGR uint8: [size, size, 3]."""
    check_frame(frame, where=where)
    resized = resize_shorter_side(frame, spec.size, spec)
    top, left = center_crop_offset(resized.shape[0], resized.shape[1], spec.size)
    return resized[top:top + spec.size, left:left + spec.size]


def normalize(crops_bgr: np.ndarray, spec: PreprocessSpec = CLIP_VIT_B16) -> np.ndarray:
    """BGR uint8 [N, S, S, 3] -> RGB float32 [N, 3, S, S], (x / 255 - mean) / std."""
    if crops_bgr.dtype != np.uint8 or crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (spec.size, spec.size, 3):
        raise ValueError(f"expected uint8 crops [N, {spec.size}, {spec.size}, 3], "
                         f"got {crops_bgr.dtype} {crops_bgr.shape}")
    std = np.asarray(spec.std, np.float32)
    scale = (1.0 / (255.0 * std))[:, None, None]  # [3, 1, 1] RGB
    shift = (-np.asarray(spec.mean, np.float32) / std)[:, None, None]
    x = crops_bgr.transpose(0, 3, 1, 2)[:, ::-1].astype(np.float32, order="C")  # [N, 3, S, S] RGB
    x *= scale
    x += shift
    return x


def preprocess(frames: Sequence[np.ndarray], spec: PreprocessSpec = CLIP_VIT_B16) -> np.ndarray:
    """BGR uint8 frames of any sizes -> model input float32 [N, 3, size, size]."""
    if len(frames) == 0:
        return np.zeros((0, 3, spec.size, spec.size), np.float32)
    return normalize(np.stack([center_crop(f, spec, where=f"frame {i}") for i, f in enumerate(frames)]), spec)
