"""Label maps of the supported datasets and parsing of their label strings.

Class 0 is always the normal class. UCF-Crime labels are class names (``Abuse``), XD-Violence labels are
codes joined by ``-`` (``B2-0-0``, ``G-B2-B6``): the first code is the primary class, every code is part of
the multi-hot video label, ``0`` fills unused places (the VadCLIP convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelMap:
    """Ordered classes of one dataset; ``codes[i]`` is what the list files say, ``names[i]`` what people read."""

    dataset: str
    codes: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.codes)

    def index(self, code: str, *, where: str = "") -> int:
        try:
            return self.codes.index(code)
        except ValueError:
            at = f" in {where}" if where else ""
            raise ValueError(
                f"unknown {self.dataset} label {code!r}{at}; expected one of {', '.join(self.codes)}"
            ) from None

    def parse(self, label: str, *, where: str = "") -> tuple[int, np.ndarray]:
        """Label string -> (primary class index, multi-hot [M] float32)."""
        if self.dataset == "xd":
            codes = [c for c in label.strip().split("-") if c != "0"]
        else:
            codes = [label.strip()]
        if not codes or not codes[0]:
            raise ValueError(f"empty label {label!r}" + (f" in {where}" if where else ""))
        multi_hot = np.zeros(self.num_classes, np.float32)
        indices = [self.index(c, where=where) for c in codes]
        multi_hot[indices] = 1.0
        return indices[0], multi_hot


UCF = LabelMap(
    dataset="ucf",
    codes=("Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
           "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"),
    names=("normal", "abuse", "arrest", "arson", "assault", "burglary", "explosion", "fighting",
           "road accidents", "robbery", "shooting", "shoplifting", "stealing", "vandalism"),
)

XD = LabelMap(
    dataset="xd",
    codes=("A", "B1", "B2", "B4", "B5", "B6", "G"),
    names=("normal", "fighting", "shooting", "riot", "abuse", "car accident", "explosion"),
)

LABEL_MAPS: dict[str, LabelMap] = {"ucf": UCF, "xd": XD}


def label_map(dataset: str) -> LabelMap:
    try:
        return LABEL_MAPS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(LABEL_MAPS)}") from None
