"""The model registry: names, metadata without building, helpful errors; and device selection."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import model as model_pkg
from model import UnknownModelError, create_model, list_models, model_info, registry, select_device


def test_registered_variants():
    assert {"prfnet", "prfnet-tiny"} <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match=r"did you mean 'prfnet-tiny'") as err:
        create_model("prfnet_tiny")
    assert isinstance(err.value, ValueError)
    assert "registered: prfnet, prfnet-tiny" in str(err.value)
    with pytest.raises(UnknownModelError, match="did you mean"):
        model_info("prfnt")
    with pytest.raises(UnknownModelError) as far:
        model_info("vgg16")
    assert "did you mean" not in str(far.value)


def test_model_info_does_not_build(variant, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("model_info must not build the model")

    monkeypatch.setattr(model_pkg.PRFNet, "__init__", refuse)
    info = model_info(variant)
    assert info["name"] == variant
    assert info["description"]
    assert isinstance(info["patch_size"], int) and info["patch_size"] >= info["min_size"] >= 32
    assert info["higher_is_better"] is True
    assert info["output"].startswith("p_a")
    json.dumps(info)  # plain data
    info["config"]["head_channels"].append(1)  # a copy: the registry's entry is untouched
    assert len(model_info(variant)["config"]["head_channels"]) == 4


def test_overrides_replace_defaults():
    net = create_model("prfnet-tiny", mlp_hidden=32, patch_size=96)
    assert net.meta["name"] == "prfnet-tiny"
    assert net.config["mlp_hidden"] == 32 and net.meta["patch_size"] == 96
    assert net.mlp[0].out_features == 32
    with pytest.raises(TypeError):
        create_model("prfnet-tiny", no_such_option=1)


def test_register_model_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_model("linear-probe", info={"patch_size": 64})
    def linear_probe(**overrides) -> torch.nn.Module:
        """A stand-in model."""
        return torch.nn.Linear(2, 1, **overrides)

    assert "linear-probe" in list_models()
    assert model_info("linear-probe") == {
        "name": "linear-probe",
        "description": "A stand-in model.",
        "patch_size": 64,
    }
    assert isinstance(create_model("linear-probe", bias=False), torch.nn.Linear)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("linear-probe")(lambda **kw: torch.nn.Identity())


def test_select_device(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("auto").type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == torch.device("cpu")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert select_device("cuda:0") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("warp-drive")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select_device("cpu")
