"""Training videos as torch items: the release's videos at a fixed length (see :mod:`train.data.release`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from train.data.release import DEFAULT_LEN, Split, pool_or_pad


class FeatureDataset(Dataset):
    """Training videos at a fixed length.

    Item: ``features`` [T,512] float32, ``mask`` [T] bool, ``multi_hot`` [M] float32, ``primary`` int,
    ``index`` int (the video's position in the split) and, when ``targets`` are given (one array per video at
    the native snippet rate, [N] or [N,K], e.g. pseudo labels), ``target`` pooled/padded like the features.
    The crop is drawn per access; with ``seed`` it depends only on (seed, epoch, index): call ``set_epoch``.
    """

    def __init__(self, split: Split, length: int = DEFAULT_LEN, targets: Sequence[np.ndarray] | None = None,
                 seed: int | None = None, random_crop: bool = True) -> None:
        if targets is not None and len(targets) != len(split):
            raise ValueError(f"{len(targets)} target arrays for {len(split)} videos of {split.source}")
        self.split = split
        self.length = length
        self.targets = targets
        self.seed = seed
        self.random_crop = random_crop
        self.epoch = 0
        self._rng = np.random.default_rng()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split)

    def crop_of(self, index: int) -> int:
        n = len(self.split.videos[index].crops)
        if not self.random_crop or n == 1:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.seed is not None else self._rng
        return int(rng.integers(n))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        video = self.split.videos[index]
        feats = video.load(self.crop_of(index))
        x, mask = pool_or_pad(feats, self.length)
        item: dict[str, torch.Tensor | int] = {
            "features": torch.from_numpy(x),
            "mask": torch.from_numpy(mask),
            "multi_hot": torch.from_numpy(video.multi_hot),
            "primary": video.primary,
            "index": index,
        }
        if self.targets is not None:
            target = np.asarray(self.targets[index], np.float32)
            if target.shape[0] != feats.shape[0]:
                raise ValueError(f"target of video {video.name} has {target.shape[0]} snippets, "
                                 f"its features {video.crops[0]} have {feats.shape[0]}")
            item["target"] = torch.from_numpy(pool_or_pad(target, self.length)[0])
        return item
