"""PairScorer: score against a naive per-pair loop over the model (K patches above and below the batch size), the
projected cache, and the batch size chosen from free device memory."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model import create_model
from pipeline.scoring.scorer import DEFAULT_BATCH, MAX_AUTO_BATCH, PairScorer, batch_size_for_memory


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


def test_the_cache_holds_projections_not_backbone_maps(tiny):
    patches = group_patches(2, 3, seed=5)
    cache = PairScorer(tiny, batch_size=4).project(patches.reshape(9, 3, 32, 32))
    assert [f.shape[1] for f in cache] == tiny.meta["config"]["head_channels"]
    assert [len(f) for f in cache] == [9] * 4


# --- batch size from free device memory (arithmetic with fake figures; no GPU needed) --------------------------

MiB = 2**20


@pytest.mark.parametrize(
    ("free", "per_patch", "expected"),
    [
        (16_000 * MiB, 20 * MiB, 400),  # 8000 MiB usable / 20 MiB
        (16_000 * MiB, 30 * MiB, 264),  # 266 rounded down to a multiple of 8
        (100 * MiB, 20 * MiB, 2),  # below 8: not rounded
        (10 * MiB, 20 * MiB, 1),  # never 0
        (80_000 * MiB, 1 * MiB, MAX_AUTO_BATCH),  # capped
        (1 * MiB, 0, MAX_AUTO_BATCH),  # nothing measured
    ],
)
def test_batch_size_for_memory(free, per_patch, expected):
    assert batch_size_for_memory(free, per_patch) == expected


def test_batch_size_for_memory_safety_factor():
    assert batch_size_for_memory(1000 * MiB, 10 * MiB, safety=1.0) == 96  # 100 -> 96
    assert batch_size_for_memory(1000 * MiB, 10 * MiB, safety=0.25) == 24
    assert batch_size_for_memory(1000 * MiB, 10 * MiB, safety=0.5, maximum=32) == 32


def test_cuda_batch_size_comes_from_free_memory(tiny, monkeypatch):
    """A CUDA scorer without a batch size measures one probe batch and sizes batches from free memory."""
    monkeypatch.setattr(PairScorer, "patch_bytes", lambda self, probe=4, size=None: 12 * MiB)
    monkeypatch.setattr(PairScorer, "free_bytes", lambda self: 6_000 * MiB)
    assert PairScorer(tiny, device="cuda").batch_size == 248  # 3000 / 12 = 250 -> 248
    assert PairScorer(tiny, device="cuda", batch_size=7).batch_size == 7
    assert PairScorer(tiny).batch_size == DEFAULT_BATCH["cpu"] == 16


def test_cuda_batch_size_falls_back_when_memory_cannot_be_measured(tiny, monkeypatch):
    def fail(self, probe=4, size=None):
        raise RuntimeError("no memory statistics")

    monkeypatch.setattr(PairScorer, "patch_bytes", fail)
    assert PairScorer(tiny, device="cuda").batch_size == DEFAULT_BATCH["cuda"]


def test_cuda_batch_size_is_fitted_again_for_other_patch_sizes(tiny, monkeypatch):
    """``--patch`` other than the model's: the per-patch footprint follows the area, and so does the batch."""
    monkeypatch.setattr(PairScorer, "patch_bytes", lambda self, probe=4, size=None: size[0] * size[1] * 1024)
    monkeypatch.setattr(PairScorer, "free_bytes", lambda self: 4_000 * MiB)
    scorer = PairScorer(tiny, device="cpu")  # the fitting is what is under test; the model runs on the CPU
    assert scorer._fitted_for is None and scorer.batch_size == 16
    scorer.batch_size = scorer.fit_batch_size()  # what a CUDA scorer does in __init__
    assert scorer._fitted_for == (128, 128) and scorer.batch_size == 120  # 2000 MiB / 16 MiB = 125 -> 120
    scorer.project(group_patches(2, 1, size=64).reshape(3, 3, 64, 64))
    assert scorer._fitted_for == (64, 64) and scorer.batch_size == 496  # 2000 MiB / 4 MiB = 500 -> 496
    given = PairScorer(tiny, device="cpu", batch_size=8)
    given.project(group_patches(2, 1, size=64).reshape(3, 3, 64, 64))
    assert given.batch_size == 8


@pytest.mark.gpu
def test_on_cuda_scores_equal_the_cpu_and_the_batch_fits(tiny):
    cuda = PairScorer(copy.deepcopy(tiny).to("cuda"))  # pinned, non-blocking copies to the device
    assert 1 <= cuda.batch_size <= MAX_AUTO_BATCH
    assert 0 < cuda.patch_bytes() < cuda.free_bytes()
    patches = group_patches(3, 4, seed=6)
    got = cuda.score(patches, [(0, 1), (2, 1)])
    np.testing.assert_allclose(got, naive(tiny, patches, [(0, 1), (2, 1)]), atol=1e-4, rtol=0)
