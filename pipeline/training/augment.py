"""Augmentation of a triplet: one random crop position, the same flips for O, A and B, and an A/B swap.

Everything about a sample is drawn from one generator seeded by (seed, epoch, sample index), so a sample is the
same however many workers share the epoch and whichever of them draws it.

The swap exchanges A and B and replaces the label ``l`` by ``1 - l``. For PRFNet, antisymmetric by construction,
the loss of a swapped sample is exactly that of the original; the swap keeps the stream of labels balanced for any
model and for the metrics computed on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Params:
    """Where to crop and what to flip, for one sample."""

    top: int
    left: int
    hflip: bool
    vflip: bool
    swap: bool


def draw(rng: np.random.Generator, height: int, width: int, crop: int, *, flips: bool = True) -> Params:
    """A crop position inside an image of this size (0 on an axis shorter than the crop) and the flips."""
    top = int(rng.integers(0, height - crop + 1)) if height > crop else 0
    left = int(rng.integers(0, width - crop + 1)) if width > crop else 0
    hflip, vflip, swap = (bool(v) for v in rng.random(3) < 0.5)
    return Params(top, left, hflip and flips, vflip and flips, swap)


def _fit(img: np.ndarray, crop: int) -> np.ndarray:
    """Reflect-pad an image smaller than the crop on either axis (rare: tiny inputs)."""
    h, w = img.shape[:2]
    if h >= crop and w >= crop:
        return img
    return np.pad(img, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="reflect")


def apply(
    o: np.ndarray, a: np.ndarray, b: np.ndarray, label: float, p: Params, crop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Crop O, A and B at the same place, flip them alike, swap A and B if drawn: (H, W, 3) uint8 arrays."""
    out = []
    for img in (o, a, b):
        img = _fit(img, crop)[p.top : p.top + crop, p.left : p.left + crop]
        if p.hflip:
            img = img[:, ::-1]
        if p.vflip:
            img = img[::-1]
        out.append(np.ascontiguousarray(img))
    o2, a2, b2 = out
    if p.swap:
        return o2, b2, a2, 1.0 - label
    return o2, a2, b2, label
