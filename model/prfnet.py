"""PRFNet: a learned two-alternative forced-choice (2AFC) perceptual model.

Paper: K. Wu, X. Jiang, R. Yu, Y. Luo, T. Jiang, X. Wu, P. Wei, "Progressive Feature Fusion Network for
Enhancing Image Quality Assessment", arXiv:2401.06992 (CLIC perceptual model track, ranked second).

Given a reference ``O`` and two distorted versions ``A`` and ``B``, the network outputs P(A is closer to O
than B).

What follows the paper:

* Feature extraction with one shared SE-Res2Net-50 (26w×4s) backbone, squeeze-and-excitation in every
  bottleneck, applied to O, A and B; four scales (strides 4, 8, 16, 32). Built from timm's Res2Net with
  ``block_args=dict(scale=4, attn_layer=SEModule)``; ImageNet Res2Net weights can initialise it
  (``pretrained=True``) and load non-strictly because timm's Res2Net weights have no SE layers.
* A cross subtraction block at each scale: it separates the positive and the negative pair (the differences of
  A and of B from O) and gathers them into one comparison feature map.
* Progressive feature fusion, deepest scale to shallowest: weights computed from the deeper (already fused)
  map by a convolution and a sigmoid, resized to the shallower map's size, multiply the shallower map
  element-wise (Hadamard product).
* Pooling and an MLP regress the fused features to one output.

Our choices, where the paper is not specific or where prfeval needs more:

* The cross subtraction block's exact form: one shared 1×1 convolution first projects the feature maps of O, A
  and B to a few channels (``head_channels``); then ``|P_A - P_O|``, ``|P_B - P_O|`` (how far each image is
  from the reference: "separate") and ``P_A - P_B`` (where the two differ) are concatenated and mixed by a 1×1
  then a 3×3 convolution with ReLU ("gather"). Projecting before subtracting keeps the per-pair work small:
  the projection of each image is shared by both directions of a comparison. The head uses no batch
  normalisation, so a pair's score never depends on the other pairs in its batch.
* The fusion gate is a 3×3 convolution on the deeper map, resized bilinearly to the shallower map's actual
  size, so any H, W ≥ ``min_size`` works (not only multiples of 32).
* Pooling is a global average of every fused scale, concatenated; the MLP has one hidden layer.
* Antisymmetry by construction: with ``g`` the head above, ``logit(O, A, B) = g(O, A, B) - g(O, B, A)``. The
  two terms are two calls of the same code on batches of the same shape, so swapping A and B swaps them
  exactly: ``logit(O, A, B) == -logit(O, B, A)`` bit for bit in eval mode, and ``p(O, A, A) == 0.5`` exactly.
* The backbone runs once per image (:meth:`PRFNet.encode`), and :meth:`PRFNet.compare` scores any pair from
  cached features: scoring every pair of a group of ``n`` images costs ``n + 1`` backbone passes instead of
  ``3 n (n - 1) / 2``.
* What a cache can hold: the cross subtraction's projection is a bias-free 1×1 convolution, linear and applied
  to each image on its own before any subtraction, so it is per image and cacheable: :meth:`PRFNet.project`
  once per image, then :meth:`PRFNet.compare_projected` per pair. Everything after the subtraction (``|·|``,
  the gather convolutions, fusion, pooling, MLP) depends on the pair and runs per pair. For ``prfnet`` at 256
  px the projections are 0.94 MiB per patch in float32 against 7.5 MiB for the backbone's maps.
* ImageNet mean/std normalisation happens inside :meth:`PRFNet.encode`; inputs are RGB in [0, 1].
* In training mode :meth:`PRFNet.forward` runs O, A and B through the backbone as one batch, so batch-norm
  statistics are shared by the three images of a triplet (in eval mode each is encoded separately, which is
  what makes the antisymmetry exact).
* ``prfnet-tiny`` is not in the paper: the same design at a size for CPU demos and tests (one SE-Res2Net
  bottleneck per stage, narrow channels, a 3-layer 3×3 stem).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SEModule
from torch import Tensor, nn

from .registry import register_model

__all__ = ["CrossSubtractBlock", "PRFNet", "ProgressiveFusion"]

NUM_SCALES = 4
OUTPUT = "p_a: P(A closer to O than B)"
INPUT_RANGE = (0.0, 1.0)


# --- building blocks ----------------------------------------------------------------------------------------


class CrossSubtractBlock(nn.Module):
    """Compare a positive pair (O, A) and a negative pair (O, B) at one scale.

    The feature maps of O, A and B are first projected by one shared 1×1 convolution (``in_chs`` →
    ``out_chs``; :meth:`project`), so the subtractions and everything after them run on ``out_chs`` channels.
    Separate: ``|P_A - P_O|`` and ``|P_B - P_O|`` measure how far each image is from the reference; gather:
    these and ``P_A - P_B`` are concatenated and mixed by a 1×1 and a 3×3 convolution (:meth:`forward`).
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_chs, out_chs, kernel_size=1, bias=False
        )  # only differences are used: no bias
        self.reduce = nn.Conv2d(3 * out_chs, out_chs, kernel_size=1)
        self.conv = nn.Conv2d(out_chs, out_chs, kernel_size=3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def project(self, f: Tensor) -> Tensor:
        """The shared projection of one image's feature map."""
        return self.proj(f)

    def forward(self, p_o: Tensor, p_a: Tensor, p_b: Tensor) -> Tensor:
        """The comparison map from projected features of O, A and B."""
        x = torch.cat([(p_a - p_o).abs(), (p_b - p_o).abs(), p_a - p_b], dim=1)
        x = self.act(self.reduce(x))
        return self.act(self.conv(x))


class ProgressiveFusion(nn.Module):
    """Fuse maps deepest to shallowest: ``x_i <- x_i * resize(sigmoid(conv(x_{i+1})))``.

    ``channels`` lists the channel counts shallowest first; the deepest map passes through unchanged.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.gates = nn.ModuleList(
            nn.Conv2d(channels[i + 1], channels[i], kernel_size=3, padding=1)
            for i in range(len(channels) - 1)
        )

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        fused: list[Tensor] = list(xs)
        for i in reversed(range(len(self.gates))):
            w = torch.sigmoid(self.gates[i](fused[i + 1]))
            w = F.interpolate(w, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
            fused[i] = xs[i] * w
        return fused


def _create_backbone(
    name: str,
    backbone_args: Mapping[str, Any],
    res2net_scale: int,
    pretrained: bool,
    pretrained_file: str | None,
) -> nn.Module:
    """A timm SE-Res2Net returning the feature maps of its four stages."""
    kwargs: dict[str, Any] = {
        "features_only": True,
        "out_indices": (1, 2, 3, 4),
        "block_args": {"scale": res2net_scale, "attn_layer": SEModule},
    }
    kwargs.update({k: tuple(v) if isinstance(v, list) else v for k, v in backbone_args.items()})
    load = bool(pretrained or pretrained_file)
    if load:
        if backbone_args:
            raise ValueError(
                f"ImageNet weights exist only for the unmodified {name}; drop backbone_args or pretrained"
            )
        # timm's Res2Net weights have no SE layers: those keys stay freshly initialised.
        kwargs["pretrained_strict"] = False
        if pretrained_file:
            kwargs["pretrained_cfg_overlay"] = {"file": pretrained_file}
    return timm.create_model(name, pretrained=load, **kwargs)


# --- the model ----------------------------------------------------------------------------------------------


class PRFNet(nn.Module):
    """PRFNet: ``model(o, a, b)`` is P(A closer to O than B) for images in [0, 1] of shape (N, 3, H, W).

    Args:
        backbone: timm Res2Net model name; SE attention is added to every bottleneck.
        backbone_args: extra timm constructor arguments (``layers``, ``channels``, ``stem_type``, ...);
            JSON-serialisable. ``None`` keeps the named model's architecture.
        res2net_scale: Res2Net scale (number of feature splits per bottleneck).
        head_channels: channels of the cross subtraction output at each of the four scales, shallowest first.
        mlp_hidden: hidden width of the final MLP.
        drop_rate: dropout before the MLP's last layer (training only).
        patch_size: the tile size the pipeline cuts images into by default.
        min_size: the smallest height and width accepted.
        pretrained: initialise the backbone with timm's ImageNet weights (needs network access).
        pretrained_file: initialise the backbone from a local timm weight file instead (offline).
    """

    def __init__(
        self,
        *,
        backbone: str = "res2net50_26w_4s",
        backbone_args: Mapping[str, Any] | None = None,
        res2net_scale: int = 4,
        head_channels: Sequence[int] = (32, 64, 128, 256),
        mlp_hidden: int = 256,
        drop_rate: float = 0.0,
        patch_size: int = 256,
        min_size: int = 32,
        pretrained: bool = False,
        pretrained_file: str | None = None,
    ) -> None:
        super().__init__()
        head_channels = [int(c) for c in head_channels]
        if len(head_channels) != NUM_SCALES:
            raise ValueError(f"head_channels needs {NUM_SCALES} values, got {head_channels}")
        if min_size < 32 or patch_size < min_size:
            raise ValueError(
                f"need 32 <= min_size <= patch_size, got min_size={min_size}, patch_size={patch_size}"
            )
        backbone_args = {k: list(v) if isinstance(v, tuple) else v for k, v in (backbone_args or {}).items()}
        self.variant = "prfnet"  # the registered name; set by the registered constructors
        self.config: dict[str, Any] = {
            "backbone": backbone,
            "backbone_args": copy.deepcopy(backbone_args),
            "res2net_scale": int(res2net_scale),
            "head_channels": head_channels,
            "mlp_hidden": int(mlp_hidden),
            "drop_rate": float(drop_rate),
            "patch_size": int(patch_size),
            "min_size": int(min_size),
        }
        self.min_size = int(min_size)

        self.backbone = _create_backbone(backbone, backbone_args, res2net_scale, pretrained, pretrained_file)
        info = self.backbone.feature_info
        self.feature_info: list[dict[str, Any]] = [
            {"num_chs": c, "reduction": r, "module": m}
            for c, r, m in zip(info.channels(), info.reduction(), info.module_name(), strict=True)
        ]
        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1), persistent=False)

        self.cross = nn.ModuleList(
            CrossSubtractBlock(f["num_chs"], c) for f, c in zip(self.feature_info, head_channels, strict=True)
        )
        self.fusion = ProgressiveFusion(head_channels)
        self.mlp = nn.Sequential(
            nn.Linear(sum(head_channels), mlp_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(mlp_hidden, 1),
        )
        self._init_head()

    # metadata

    @staticmethod
    def describe(variant: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Metadata of a variant from its config alone (no weights built): what :func:`model_info` returns."""
        return {
            "name": variant,
            "patch_size": int(config.get("patch_size", 256)),
            "min_size": int(config.get("min_size", 32)),
            "input_range": INPUT_RANGE,
            "output": OUTPUT,
            "higher_is_better": True,
            "config": copy.deepcopy(dict(config)),
        }

    @property
    def meta(self) -> dict[str, Any]:
        """Name, patch size, input range, output meaning, min size and the config that rebuilds this model."""
        meta = self.describe(self.variant, self.config)
        meta["feature_channels"] = [f["num_chs"] for f in self.feature_info]
        meta["feature_reduction"] = [f["reduction"] for f in self.feature_info]
        return meta

    # features

    def _check_images(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point images in [0, 1], got dtype {x.dtype}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"images must be at least {self.min_size}x{self.min_size}, got {tuple(x.shape[-2:])}"
            )

    def encode(self, x: Tensor) -> list[Tensor]:
        """The four feature maps (shallowest first) of a batch of RGB images in [0, 1], shape (N, 3, H, W)."""
        self._check_images(x)
        return list(self.backbone((x - self.mean) / self.std))

    forward_features = encode

    # comparison

    def project(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """The cross subtraction blocks' shared projections of one image batch's four feature maps.

        Per image and linear (a bias-free 1×1 convolution): what a feature cache holds, with
        :meth:`compare_projected` scoring pairs from it. ``project(f)[i] == project(f[i])`` up to rounding.
        """
        return [block.project(f) for block, f in zip(self.cross, feats, strict=True)]

    def encode_projected(self, x: Tensor) -> list[Tensor]:
        """``project(encode(x))``: the cacheable features of a batch of RGB images in [0, 1]."""
        return self.project(self.encode(x))

    def _score(self, p_o: Sequence[Tensor], p_a: Sequence[Tensor], p_b: Sequence[Tensor]) -> Tensor:
        xs = [block(o, a, b) for block, o, a, b in zip(self.cross, p_o, p_a, p_b, strict=True)]
        fused = self.fusion(xs)
        pooled = torch.cat([x.mean(dim=(2, 3)) for x in fused], dim=1)
        return self.mlp(pooled).squeeze(1)

    def forward_head(self, f_o: Sequence[Tensor], f_a: Sequence[Tensor], f_b: Sequence[Tensor]) -> Tensor:
        """The one-way score ``g(O, A, B)`` (N,): cross subtraction, progressive fusion, pooling, MLP."""
        return self._score(self.project(f_o), self.project(f_a), self.project(f_b))

    def compare_projected(
        self, p_o: Sequence[Tensor], p_a: Sequence[Tensor], p_b: Sequence[Tensor]
    ) -> Tensor:
        """Logits (N,) of P(A closer to O than B) from :meth:`project`'s outputs; antisymmetric in A and B.

        ``g(O, A, B) - g(O, B, A)``: the two directions are two calls of the same code on the same shapes, so
        swapping A and B negates the logit exactly.
        """
        _check_features(p_o, p_a, p_b)
        return self._score(p_o, p_a, p_b) - self._score(p_o, p_b, p_a)

    def compare(self, f_o: Sequence[Tensor], f_a: Sequence[Tensor], f_b: Sequence[Tensor]) -> Tensor:
        """Logits (N,) of P(A closer to O than B) from features of :meth:`encode`; antisymmetric in A and B.

        Each image's features are projected once and shared by both directions (:meth:`compare_projected`).
        """
        _check_features(f_o, f_a, f_b)
        return self.compare_projected(self.project(f_o), self.project(f_a), self.project(f_b))

    def forward(self, o: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """P(A closer to O than B), shape (N,)."""
        if not o.shape == a.shape == b.shape:
            raise ValueError(
                f"o, a and b must have one shape, got {tuple(o.shape)}, {tuple(a.shape)}, {tuple(b.shape)}"
            )
        if self.training:
            feats = self.encode(torch.cat([o, a, b]))
            f_o, f_a, f_b = (list(t) for t in zip(*(f.chunk(3) for f in feats), strict=True))
        else:
            f_o, f_a, f_b = self.encode(o), self.encode(a), self.encode(b)
        return torch.sigmoid(self.compare(f_o, f_a, f_b))

    # weight init

    def _init_head(self) -> None:
        for m in [*self.cross.modules(), *self.fusion.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # the MLP keeps PyTorch's default Linear initialisation


def _check_features(f_o: Sequence[Tensor], f_a: Sequence[Tensor], f_b: Sequence[Tensor]) -> None:
    for name, f in (("f_o", f_o), ("f_a", f_a), ("f_b", f_b)):
        if len(f) != NUM_SCALES:
            raise ValueError(f"{name} must hold {NUM_SCALES} feature maps, got {len(f)}")
    for i, (o, a, b) in enumerate(zip(f_o, f_a, f_b, strict=True)):
        if not o.shape == a.shape == b.shape:
            raise ValueError(
                f"feature maps of scale {i} differ in shape: "
                f"{tuple(o.shape)}, {tuple(a.shape)}, {tuple(b.shape)}"
            )


# --- registered variants ------------------------------------------------------------------------------------

_CONFIGS: dict[str, dict[str, Any]] = {
    "prfnet": {
        "backbone": "res2net50_26w_4s",
        "backbone_args": {},
        "res2net_scale": 4,
        "head_channels": [32, 64, 128, 256],
        "mlp_hidden": 256,
        "drop_rate": 0.0,
        "patch_size": 256,
        "min_size": 32,
    },
    "prfnet-tiny": {
        "backbone": "res2net50_26w_4s",
        "backbone_args": {
            "layers": [1, 1, 1, 1],
            "channels": [16, 32, 64, 128],
            "stem_type": "deep",
            "stem_width": 8,
        },
        "res2net_scale": 4,
        "head_channels": [16, 32, 64, 64],
        "mlp_hidden": 64,
        "drop_rate": 0.0,
        "patch_size": 128,
        "min_size": 32,
    },
}


def _create_prfnet(variant: str, **overrides: Any) -> PRFNet:
    kwargs = {**copy.deepcopy(_CONFIGS[variant]), **overrides}
    model = PRFNet(**kwargs)
    model.variant = variant
    return model


def _info(variant: str) -> dict[str, Any]:
    return PRFNet.describe(variant, _CONFIGS[variant])


@register_model("prfnet", info=_info("prfnet"))
def prfnet(**overrides: Any) -> PRFNet:
    """The paper's configuration: SE-Res2Net-50 26w×4s, four scales, 256-px patches (28.4M parameters)."""
    return _create_prfnet("prfnet", **overrides)


@register_model("prfnet-tiny", info=_info("prfnet-tiny"), weights="prfnet-tiny.safetensors")
def prfnet_tiny(**overrides: Any) -> PRFNet:
    """The same design at CPU demo size: one SE-Res2Net bottleneck a stage, 128-px patches (0.77M params)."""
    return _create_prfnet("prfnet-tiny", **overrides)
