"""PairScorer.score against a naive per-pair loop over the model, with K patches above and below the batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import create_model
from pipeline.scoring.scorer import PairScorer


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("prfnet-tiny").eval()


def naive(model, patches: np.ndarray, pairs) -> np.ndarray:
    """Each pair on its own: encode O, A and B's K patches, compare, mean over the patches."""
    x = torch.from_numpy(np.ascontiguousarray(patches)).float() / 255.0
    out = []
    with torch.inference_mode():
        for i, j in pairs:
            f_o, f_a, f_b = model.encode(x[0]), model.encode(x[i + 1]), model.encode(x[j + 1])
            out.append(model.compare(f_o, f_a, f_b).double().mean().item())
    return np.asarray(out)


def group_patches(n_images: int, k: int, size: int = 32, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1 + n_images, k, 3, size, size), dtype=np.uint8)


@pytest.mark.parametrize(("k", "batch_size"), [(6, 4), (6, 6), (3, 16), (5, 7), (1, 2)])
def test_score_equals_the_naive_loop(tiny, k, batch_size):
    patches = group_patches(4, k)
    pairs = [(0, 1), (0, 2), (1, 3), (3, 2), (2, 0), (0, 3)]
    got = PairScorer(tiny, batch_size=batch_size).score(patches, pairs)
    assert got.shape == (len(pairs),) and got.dtype == np.float64
    np.testing.assert_allclose(got, naive(tiny, patches, pairs), atol=1e-6, rtol=0)


def test_swapping_a_and_b_negates_the_logit(tiny):
    patches = group_patches(2, 3, seed=3)
    ab, ba = PairScorer(tiny, batch_size=4).score(patches, [(0, 1), (1, 0)])
    assert ab == pytest.approx(-ba, abs=1e-6)


def test_read_only_patches_are_scored_without_a_copy_or_a_warning(tiny, recwarn):
    patches = group_patches(2, 2, seed=4)
    patches.setflags(write=False)  # what a zero-copy Ray Data tensor column hands the actor
    got = PairScorer(tiny, batch_size=2).score(patches, [(0, 1)])
    np.testing.assert_allclose(got, naive(tiny, patches, [(0, 1)]), atol=1e-6, rtol=0)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_no_pairs_is_no_work(tiny):
    assert PairScorer(tiny).score(group_patches(1, 2), []).shape == (0,)
