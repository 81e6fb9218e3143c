"""Cutting images into a grid of patches that covers every pixel.

All images of a reference group have the same size, so they share one grid and patch ``k`` of A is compared with
patch ``k`` of B and of the reference. Along each axis the patches are placed at evenly spaced offsets from 0 to
``size - patch``: the grid covers the image exactly, with the smallest overlap. An axis shorter than the patch gets
one patch of the axis's full length.
"""

from __future__ import annotations

import math

import numpy as np


def offsets(size: int, patch: int) -> list[int]:
    """Start offsets along one axis."""
    if size <= patch:
        return [0]
    n = math.ceil(size / patch)
    return [round(k * (size - patch) / (n - 1)) for k in range(n)]


def grid(height: int, width: int, patch: int) -> list[tuple[int, int, int, int]]:
    """Patch boxes ``(top, left, h, w)`` covering an image of the given size."""
    ph, pw = min(patch, height), min(patch, width)
    return [(t, left, ph, pw) for t in offsets(height, patch) for left in offsets(width, patch)]


def patches(images: np.ndarray, patch: int) -> np.ndarray:
    """(N, H, W, 3) uint8 images -> (N, K, 3, ph, pw) uint8 patches on the shared grid (channels first)."""
    _, height, width, _ = images.shape
    boxes = grid(height, width, patch)
    out = np.stack([images[:, t : t + h, left : left + w, :] for t, left, h, w in boxes], axis=1)
    return np.ascontiguousarray(out.transpose(0, 1, 4, 2, 3))
