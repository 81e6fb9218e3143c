"""PRFNet, every registered variant: shapes, antisymmetry, cached-feature comparison, metadata, training."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.layers import SEModule
from timm.models.res2net import Bottle2neck

from model import PRFNet, create_model, model_info

SIZES = [(64, 64), (70, 90), (33, 47), (96, 40)]


def test_output_shape_and_finite(variant, get_model, triplet):
    model = get_model(variant)
    o, a, b = triplet(0, 2, 64, 64)
    with torch.inference_mode():
        p = model(o, a, b)
        logits = model.compare(model.encode(o), model.encode(a), model.encode(b))
    assert p.shape == (2,) and logits.shape == (2,)
    assert torch.isfinite(p).all() and torch.isfinite(logits).all()
    assert ((p >= 0) & (p <= 1)).all()


@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from(SIZES), n=st.integers(1, 2))
def test_antisymmetric_exactly(variant, get_model, triplet, seed, size, n):
    model = get_model(variant)
    o, a, b = triplet(seed, n, *size)
    with torch.inference_mode():
        f_o, f_a, f_b = model.encode(o), model.encode(a), model.encode(b)
        ab = model.compare(f_o, f_a, f_b)
        ba = model.compare(f_o, f_b, f_a)
        p_ab, p_ba = model(o, a, b), model(o, b, a)
    assert (ab != 0).all(), "an untrained model still tells different images apart"
    assert torch.equal(ab, -ba)
    torch.testing.assert_close(p_ab, 1 - p_ba, atol=1e-6, rtol=0)


def test_identical_pair_is_exactly_half(variant, get_model, triplet):
    model = get_model(variant)
    o, a, _ = triplet(1, 2, 70, 90)
    with torch.inference_mode():
        p = model(o, a, a)
        f_o, f_a = model.encode(o), model.encode(a)
        logit = model.compare(f_o, f_a, f_a)
    assert torch.equal(p, torch.full_like(p, 0.5))
    assert torch.equal(logit, torch.zeros_like(logit))


def test_forward_is_sigmoid_of_compare_of_encode(variant, get_model, triplet):
    model = get_model(variant)
    o, a, b = triplet(2, 2, 64, 72)
    with torch.inference_mode():
        p = model(o, a, b)
        expected = torch.sigmoid(model.compare(model.encode(o), model.encode(a), model.encode(b)))
    assert torch.equal(p, expected)


def test_compare_on_gathered_features_matches_forward_per_triplet(variant, get_model):
    """The pipeline's path: encode a reference group once, gather features per pair, compare all pairs."""
    model = get_model(variant)
    g = torch.Generator().manual_seed(3)
    ref = torch.rand(1, 3, 64, 80, generator=g)
    dist = torch.stack(
        [(ref[0] + s * torch.randn(3, 64, 80, generator=g)).clamp(0, 1) for s in (0.02, 0.1, 0.3, 0.5)]
    )
    pairs = list(itertools.combinations(range(len(dist)), 2))
    ia = torch.tensor([i for i, _ in pairs])
    ib = torch.tensor([j for _, j in pairs])
    with torch.inference_mode():
        f_ref, f_dist = model.encode(ref), model.encode(dist)
        f_o = [f[torch.zeros(len(pairs), dtype=torch.long)] for f in f_ref]
        batched = model.compare(f_o, [f[ia] for f in f_dist], [f[ib] for f in f_dist])
        one_by_one = torch.cat([model(ref, dist[i : i + 1], dist[j : j + 1]) for i, j in pairs])
    assert batched.shape == (len(pairs),)
    torch.testing.assert_close(torch.sigmoid(batched), one_by_one, atol=1e-5, rtol=1e-4)


def test_feature_info_matches_encoded_maps(variant, get_model):
    model = get_model(variant)
    h, w = 70, 90
    with torch.inference_mode():
        feats = model.encode(torch.rand(2, 3, h, w))
    assert len(feats) == len(model.feature_info) == 4
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    for f, info in zip(feats, model.feature_info, strict=True):
        r = info["reduction"]
        assert f.shape == (2, info["num_chs"], math.ceil(h / r), math.ceil(w / r))
    assert model.meta["feature_channels"] == [f["num_chs"] for f in model.feature_info]


def test_size_and_input_checks(variant, get_model):
    model = get_model(variant)
    m = model.meta["min_size"]
    with torch.inference_mode():
        assert model(*(torch.rand(1, 3, m, m + 1) for _ in range(3))).shape == (1,)
        with pytest.raises(ValueError, match="at least"):
            model.encode(torch.rand(1, 3, m - 1, 64))
        with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
            model.encode(torch.rand(1, 1, 64, 64))
        with pytest.raises(ValueError, match="floating-point"):
            model.encode(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
        with pytest.raises(ValueError, match="one shape"):
            model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 72))
        f = model.encode(torch.rand(2, 3, 64, 64))
        with pytest.raises(ValueError, match="4 feature maps"):
            model.compare(f[:3], f, f)


def test_eval_mode_is_deterministic(variant, get_model, triplet):
    model = get_model(variant)
    o, a, b = triplet(4, 2, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(o, a, b), model(o, a, b))


def test_meta_describes_and_rebuilds_the_model(variant, get_model):
    model = get_model(variant)
    meta = model.meta
    assert meta["name"] == variant
    assert isinstance(meta["patch_size"], int) and meta["patch_size"] >= meta["min_size"] >= 32
    assert tuple(meta["input_range"]) == (0.0, 1.0)
    assert meta["output"] == "p_a: P(A closer to O than B)"
    assert meta["higher_is_better"] is True
    config = json.loads(json.dumps(meta["config"]))  # JSON-serialisable, as stored in checkpoints
    rebuilt = create_model(variant, **config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert rebuilt.meta == meta
    info = model_info(variant)
    assert {k: info[k] for k in meta if k in info} == {k: meta[k] for k in info if k in meta}
    assert set(info) >= {
        "name",
        "patch_size",
        "min_size",
        "input_range",
        "output",
        "higher_is_better",
        "config",
    }


def test_every_bottleneck_has_se_attention(variant, get_model):
    model = get_model(variant)
    blocks = [m for m in model.backbone.modules() if isinstance(m, Bottle2neck)]
    assert blocks and all(isinstance(b.se, SEModule) for b in blocks)
    assert all(b.scale == 4 for b in blocks)
    expected = sum(model.meta["config"]["backbone_args"].get("layers", [3, 4, 6, 3]))
    assert len(blocks) == expected


@pytest.mark.slow
def test_paper_configuration(get_model):
    model = get_model("prfnet")
    blocks = [m for m in model.backbone.modules() if isinstance(m, Bottle2neck)]
    assert len(blocks) == 3 + 4 + 6 + 3  # SE-Res2Net-50
    assert model.meta["feature_channels"] == [256, 512, 1024, 2048]
    assert model.meta["patch_size"] == 256
    assert 25e6 < sum(p.numel() for p in model.parameters()) < 35e6


def test_tiny_is_small():
    model = create_model("prfnet-tiny")
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.meta["patch_size"] == 128


def test_training_steps_lower_the_loss(triplet):
    torch.manual_seed(0)
    model = create_model("prfnet-tiny").train()
    o, a, b = triplet(5, 8, 64, 64)  # a: mild noise, b: strong noise
    swap = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1], dtype=torch.bool).view(-1, 1, 1, 1)
    a, b = torch.where(swap, b, a), torch.where(swap, a, b)
    target = (~swap.view(-1)).float()  # 1 when A is the mildly distorted image
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return F.binary_cross_entropy(model(o, a, b), target)

    with torch.no_grad():
        before = loss().item()
    for _ in range(6):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = loss().item()
    assert math.isfinite(after)
    assert after < 0.5 * before


@pytest.mark.slow
def test_imagenet_backbone_weights_load_from_a_local_file(tmp_path):
    """The ``pretrained`` path, offline: a timm Res2Net-50 file (no SE layers) loads non-strictly."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    imagenet = timm.create_model("res2net50_26w_4s", pretrained=False)
    path = tmp_path / "res2net50.safetensors"
    save_file(imagenet.state_dict(), str(path))
    model = PRFNet(pretrained_file=str(path))
    assert torch.equal(model.backbone.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.backbone.layer4[2].conv3.weight, imagenet.layer4[2].conv3.weight)
    assert isinstance(model.backbone.layer4[2].se, SEModule)
    assert "pretrained" not in model.config and "pretrained_file" not in model.config


def test_pretrained_weights_need_the_unmodified_backbone(tmp_path):
    with pytest.raises(ValueError, match="unmodified"):
        create_model("prfnet-tiny", pretrained_file=str(tmp_path / "never-read.safetensors"))
