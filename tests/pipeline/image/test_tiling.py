"""Patch grids cover every pixel with the least overlap."""

import numpy as np

from pipeline.image import tiling


def test_grid_covers_image_exactly():
    for h, w, p in [(256, 256, 128), (300, 451, 128), (97, 131, 64), (50, 40, 64)]:
        covered = np.zeros((h, w), dtype=int)
        for t, left, ph, pw in tiling.grid(h, w, p):
            assert t + ph <= h and left + pw <= w
            covered[t : t + ph, left : left + pw] += 1
        assert covered.min() >= 1


def test_patches_shape_and_content():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, size=(3, 100, 70, 3), dtype=np.uint8)
    out = tiling.patches(imgs, 64)
    assert out.shape == (3, 4, 3, 64, 64)
    # last patch is aligned to the bottom-right corner
    assert np.array_equal(out[2, 3], imgs[2, 36:100, 6:70, :].transpose(2, 0, 1))
