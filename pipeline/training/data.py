"""Training samples: decoded images behind a byte-bounded cache, augmented triplets, each worker's share of an epoch.

An epoch visits every training triplet ``crops_per_triplet`` times (a fresh random crop each time) in a seeded
order. :func:`epoch_indices` gives each of ``world`` workers an equally long share (the order padded by wrapping
around, as ``DistributedSampler`` does), so every worker runs the same number of steps and the collective
operations of data-parallel training stay in step.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from pipeline.image import decoding
from pipeline.io import storage
from pipeline.training import augment


class ImageCache:
    """Decoded (H, W, 3) uint8 images by URI, least recently used evicted beyond ``max_bytes`` (one per process)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, uri: str) -> np.ndarray:
        if uri in self._items:
            self._items.move_to_end(uri)
            return self._items[uri]
        try:
            img = decoding.read_image(uri)
        except decoding.ImageError as e:
            raise RuntimeError(f"training image unusable: {e.message}") from None
        self._items[uri] = img
        self._bytes += img.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
        return img


def epoch_indices(
    n_triplets: int, *, crops_per_triplet: int, epoch: int, seed: int, rank: int, world: int
) -> list[int]:
    """This worker's sample indices for one epoch (a sample index ``i`` is triplet ``i % n_triplets``)."""
    total = n_triplets * crops_per_triplet
    order = np.random.default_rng([seed, epoch, 7]).permutation(total)
    per_worker = -(-total // world)
    padded = np.resize(order, per_worker * world)
    return [int(i) for i in padded[rank::world]]


def steps_per_epoch(n_triplets: int, *, crops_per_triplet: int, world: int, batch_size: int) -> int:
    per_worker = -(-(n_triplets * crops_per_triplet) // world)
    return -(-per_worker // batch_size)


class TripletSamples(torch.utils.data.Dataset):
    """Augmented training samples: item ``(epoch, i)`` is triplet ``i % n`` cropped with its own seeded draw.

    Returns float tensors in [0, 1] of shape (3, crop, crop) for O, A, B, the (possibly swapped) label and the
    triplet's loss weight (its ``weight``, 1 when the row has none).
    """

    def __init__(
        self, rows: list[dict], *, crop: int, seed: int, cache_bytes: int = 1 << 30, flips: bool = True
    ):
        if not rows:
            raise ValueError("no training triplets")
        self.rows = rows
        self.crop = int(crop)
        self.seed = int(seed)
        self.flips = flips
        self.cache = ImageCache(cache_bytes)

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o, a, b = (self.cache.get(row[k]) for k in ("ref_uri", "a_uri", "b_uri"))
        if not o.shape == a.shape == b.shape:
            raise RuntimeError(
                f"triplet images differ in size: {storage.display(row['ref_uri'])} {o.shape[1]}x{o.shape[0]}, "
                f"{storage.display(row['a_uri'])} {a.shape[1]}x{a.shape[0]}, "
                f"{storage.display(row['b_uri'])} {b.shape[1]}x{b.shape[0]}"
            )
        return o, a, b

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        row = self.rows[i % len(self.rows)]
        o, a, b = self._load(row)
        rng = np.random.default_rng([self.seed, epoch, i])
        params = augment.draw(rng, o.shape[0], o.shape[1], self.crop, flips=self.flips)
        o, a, b, label = augment.apply(o, a, b, float(row["label"]), params, self.crop)
        as_tensor = [torch.from_numpy(x).permute(2, 0, 1).float().div_(255.0) for x in (o, a, b)]
        weight = float(row.get("weight", 1.0))
        return (
            *as_tensor,
            torch.tensor(label, dtype=torch.float32),
            torch.tensor(weight if np.isfinite(weight) else 1.0, dtype=torch.float32),
        )


def loader(
    dataset: TripletSamples, indices: list[int], *, epoch: int, batch_size: int, workers: int = 0
) -> torch.utils.data.DataLoader:
    """Batches of this worker's share of an epoch, in order; ``workers`` > 0 decodes in background processes."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=[(epoch, i) for i in indices],
        num_workers=workers,
        persistent_workers=False,
    )
