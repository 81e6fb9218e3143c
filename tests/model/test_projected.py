"""The projected feature cache: ``project`` once per image, ``compare_projected`` per pair, equal to ``compare``."""

from __future__ import annotations

import itertools

import torch

SIZE = (64, 80)  # small inputs keep the paper-size variant fast


def group(seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(1, 3, *SIZE, generator=g)
    dist = torch.stack(
        [(ref[0] + s * torch.randn(3, *SIZE, generator=g)).clamp(0, 1) for s in (0.02, 0.1, 0.3, 0.5)[:n]]
    )
    return ref, dist


def test_projected_path_equals_compare_on_raw_features(variant, get_model):
    """What the scorer caches (projections of every image, gathered per pair) gives today's logits."""
    model = get_model(variant)
    ref, dist = group(7)
    pairs = list(itertools.permutations(range(len(dist)), 2))
    io = torch.zeros(len(pairs), dtype=torch.long)
    ia = torch.tensor([i for i, _ in pairs])
    ib = torch.tensor([j for _, j in pairs])
    with torch.inference_mode():
        f_ref, f_dist = model.encode(ref), model.encode(dist)
        raw = model.compare([f[io] for f in f_ref], [f[ia] for f in f_dist], [f[ib] for f in f_dist])
        p_ref, p_dist = model.project(f_ref), model.project(f_dist)
        projected = model.compare_projected(
            [p[io] for p in p_ref], [p[ia] for p in p_dist], [p[ib] for p in p_dist]
        )
        assert [p.shape for p in model.encode_projected(dist)] == [p.shape for p in p_dist]
    assert (raw != 0).all()
    torch.testing.assert_close(projected, raw, rtol=1e-5, atol=1e-6)


def test_compare_projected_is_antisymmetric_exactly(variant, get_model, triplet):
    model = get_model(variant)
    o, a, b = triplet(11, 2, *SIZE)
    with torch.inference_mode():
        p_o, p_a, p_b = (model.encode_projected(x) for x in (o, a, b))
        ab = model.compare_projected(p_o, p_a, p_b)
        ba = model.compare_projected(p_o, p_b, p_a)
        same = model.compare_projected(p_o, p_a, p_a)
    assert torch.equal(ab, -ba)
    assert torch.equal(same, torch.zeros_like(same))


def test_projections_have_the_head_channels_and_the_feature_grid(variant, get_model):
    model = get_model(variant)
    with torch.inference_mode():
        feats = model.encode(torch.rand(2, 3, *SIZE))
        proj = model.project(feats)
    channels = model.meta["config"]["head_channels"]
    assert [p.shape[1] for p in proj] == channels
    assert [p.shape[2:] for p in proj] == [f.shape[2:] for f in feats]
    assert sum(p[0].numel() for p in proj) < sum(f[0].numel() for f in feats)


def test_the_projection_is_per_image_and_linear(get_model):
    """Why it can be cached: projecting a batch equals projecting each image, and differences commute."""
    model = get_model("prfnet-tiny")
    g = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        fa = model.encode(torch.rand(3, 3, *SIZE, generator=g))
        fb = model.encode(torch.rand(3, 3, *SIZE, generator=g))
        whole = model.project(fa)
        one = model.project([f[1:2] for f in fa])
        diff = model.project([x - y for x, y in zip(fa, fb, strict=True)])
        pb = model.project(fb)
    for w, o in zip(whole, one, strict=True):
        torch.testing.assert_close(w[1:2], o, rtol=1e-5, atol=1e-6)
    for d, x, y in zip(diff, whole, pb, strict=True):
        torch.testing.assert_close(d, x - y, rtol=1e-4, atol=1e-5)
