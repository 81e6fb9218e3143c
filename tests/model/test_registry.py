"""The generic registry (aliases, "did you mean", refused duplicates); the model registry: names, metadata
without building, helpful errors, the packaged weights; model/ as a leaf; and device selection."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

import model as model_pkg
from model import UnknownModelError, create_model, list_models, model_info, registry, select_device
from model.registry import Registry, did_you_mean


class ColourError(ValueError):
    pass


def colours() -> Registry[str]:
    reg: Registry[str] = Registry("colour", error=ColourError, normalise=str.lower)
    reg.add("red", "#f00", aliases=("rouge",))
    reg.register("green", aliases=("vert", "verde"))("#0f0")
    reg.add("blue", "#00f")
    return reg


def test_registry_names_aliases_and_mapping_view():
    reg = colours()
    assert reg.names() == ["red", "green", "blue"] == list(reg)  # registration order, no aliases
    assert reg.get("red") == reg.get("ROUGE") == reg.get("Rouge") == "#f00"
    assert reg.get("verde") == "#0f0" and reg.resolve("vert") == "green" and reg.resolve("pink") is None
    assert "red" in reg and "rouge" not in reg and len(reg) == 3
    assert reg["blue"] == "#00f" and dict(reg.items()) == {"red": "#f00", "green": "#0f0", "blue": "#00f"}
    with pytest.raises(KeyError):
        reg["rouge"]  # item access takes registered names only


def test_registry_unknown_name_raises_its_error_with_a_hint():
    reg = colours()
    with pytest.raises(
        ColourError, match=r"^unknown colour 'gren'; did you mean 'green'\? \(known: red, green, blue\)$"
    ):
        reg.get("gren")
    with pytest.raises(ColourError, match="did you mean 'red'"):
        reg.get("rouje")  # close to an alias: the name it stands for is suggested
    with pytest.raises(ColourError) as far:
        reg.get("ultraviolet")
    assert "did you mean" not in str(far.value)
    custom = Registry("colour", error=LookupError, message=lambda name, hint: f"no {name} [{hint}]")
    custom.add("red", 1)
    with pytest.raises(LookupError, match=r"^no rd \[did you mean 'red'\?\]$"):
        custom.get("rd")


def test_registry_refuses_a_taken_name():
    reg = colours()
    reg.add("red", "#f00")  # the same object again: nothing changes
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        reg.add("red", "#e00")
    with pytest.raises(ValueError, match="colour 'rouge' is already registered"):
        reg.add("rouge", "#e00")  # an alias is taken too
    with pytest.raises(ValueError, match="colour 'blue' is already registered"):
        reg.add("cyan", "#0ff", aliases=("blue",))
    with pytest.raises(ValueError, match="already registered"):
        reg.register("green")("#0f1")
    assert reg.names() == ["red", "green", "blue"] and reg.get("green") == "#0f0"
    other = reg.copy()
    other.add("cyan", "#0ff")
    assert "cyan" in other and "cyan" not in reg


def test_did_you_mean():
    assert did_you_mean("evalute", ["evaluate", "report"]) == "did you mean 'evaluate'?"
    assert did_you_mean("zzz", ["evaluate", "report"]) == ""
    assert did_you_mean("prfnt", ["prfnet", "prfnet-tiny"], n=3, cutoff=0.5) == (
        "did you mean 'prfnet' or 'prfnet-tiny'?"
    )
    assert did_you_mean("jpge", ["jpeg", "jpg"], n=2, canonical={"jpg": "jpeg"}) == "did you mean 'jpeg'?"


def test_packaged_weights_are_the_variants_metadata():
    from model.bundled import WEIGHTS_DIR, default_checkpoint

    assert model_info("prfnet-tiny")["weights"] == "prfnet-tiny.safetensors"
    assert default_checkpoint("prfnet-tiny") == str(WEIGHTS_DIR / "prfnet-tiny.safetensors")
    assert "weights" not in model_info("prfnet") and default_checkpoint("prfnet") is None
    assert default_checkpoint("no-such-model") is None


def test_model_is_a_leaf():
    """Loading the packaged checkpoint imports nothing of the pipeline or the commands."""
    code = (
        "import sys, model\n"
        "from model.bundled import default_checkpoint\n"
        "ck = model.load_checkpoint(default_checkpoint('prfnet-tiny'), expected_model='prfnet-tiny')\n"
        "assert ck.metadata['model'] == 'prfnet-tiny'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipeline', 'jobs')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_module_is_cheap_to_import():
    code = "import sys, model.registry\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
    list_models()  # the shipped variants are registered before the copy
    monkeypatch.setattr(registry, "_REGISTRY", registry._REGISTRY.copy())

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
