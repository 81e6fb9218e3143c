"""Fixtures for the model tests.

Any test taking a ``variant`` argument runs once per registered model (``list_models()``); the full-size
variants are marked slow. ``get_model(name)`` gives each variant built once per session, seeded, in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from model import create_model, list_models

# The paper-size model (~28M parameters) makes every test that builds or runs it take seconds on a CPU.
FULL_SIZE = {"prfnet"}

Triplet = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        params = [pytest.param(n, marks=pytest.mark.slow) if n in FULL_SIZE else n for n in list_models()]
        metafunc.parametrize("variant", params)


def make_triplet(seed: int, n: int, h: int, w: int) -> Triplet:
    """A reference and two distorted versions (mild and strong noise), all in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, h, w, generator=g)
    a = (o + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    b = (o + 0.25 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    return o, a, b


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each model test on one intra-op thread, restored afterwards.

    Test suites run side by side on small machines; two OpenMP threads per process on an oversubscribed CPU
    spin at their barriers and run many times slower than one. Results do not depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def triplet() -> Callable[[int, int, int, int], Triplet]:
    """``triplet(seed, n, h, w)``: a seeded reference batch and two distorted versions of it."""
    return make_triplet


@pytest.fixture(scope="session")
def get_model() -> Callable[[str], torch.nn.Module]:
    """``get_model(name)``: the variant built once with a fixed seed, in eval mode; never modified."""
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = create_model(name).eval()
        return cache[name]

    return get
