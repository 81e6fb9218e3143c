"""The shipped prfnet-tiny checkpoint: it loads, says what it is (fine-tuned on people's answers from the
synthetic-only stage), is what the model card says, and its accuracy on the synthetic held-out photos is reproduced
from scratch (the photos' triplets regenerated, scored as `prfeval evaluate` scores)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from model import load_checkpoint, model_info
from model.bundled import default_checkpoint
from pipeline.image import decoding
from pipeline.io import storage

CARD = Path(__file__).resolve().parents[2] / "docs" / "model-card-prfnet-tiny.md"
TOLERANCE = 0.01  # absolute, on accuracy: codec library versions may shift a decoded pixel here and there


@pytest.fixture(scope="module")
def shipped():
    uri = default_checkpoint("prfnet-tiny")
    assert uri is not None, "model/weights/prfnet-tiny.safetensors is missing"
    return load_checkpoint(uri, expected_model="prfnet-tiny")


def card_number(label: str) -> float:
    m = re.search(rf"{re.escape(label)}: \*\*([0-9.]+)\*\*", CARD.read_text())
    assert m, f"the model card states no '{label}'"
    return float(m.group(1))


def test_checkpoint_loads_and_describes_its_training(shipped):
    size = Path(shipped.uri).stat().st_size
    assert size < 5 * 1024 * 1024
    meta = shipped.metadata
    assert meta["model"] == "prfnet-tiny"
    assert (
        meta["config"] == model_info("prfnet-tiny")["config"]
    )  # the architecture it was trained as is today's
    assert meta["trained_with"] == "prfeval train"
    assert meta["command"].startswith("prfeval train --triplets ")
    assert "--init-checkpoint" in meta["command"]  # fine-tuned from the synthetic-only stage
    assert meta["training"]["init_checkpoint"].endswith("prfnet-tiny.safetensors")
    assert meta["data"]["label_kind"] == "soft"  # shares of people's answers
    assert meta["data"]["train"]["references"] == 33  # every mucped23 development original
    assert meta["data"]["validation"]["reference_ids"] == ["chelsea", "rocket"]
    assert meta["seed"] == 0 and meta["epoch"] == meta["epochs_planned"]
    families = set(meta["validation"]["per_family"])
    assert families == {"jpeg", "webp", "avif", "jxl", "blur", "noise", "quantise"}
    assert not any(torch.isnan(p).any() for p in shipped.model.state_dict().values())


def test_model_card_matches_the_shipped_file(shipped):
    text = CARD.read_text()
    assert shipped.sha256 in text
    assert meta_command(shipped) in text
    assert card_number("Synthetic held-out accuracy") == pytest.approx(
        shipped.metadata["validation"]["accuracy"], abs=5e-5
    )
    for fam, m in shipped.metadata["validation"]["per_family"].items():
        assert f"| {fam} | {m['n']} | {m['accuracy']:.4f} |" in text
    assert "not a better judge than SSIMULACRA2" in text


def meta_command(shipped) -> str:
    return shipped.metadata["command"]


@pytest.mark.slow
def test_heldout_accuracy_in_the_card_is_reproduced(shipped, tmp_path):
    """Regenerate the held-out photos' triplets (seeded, deterministic) and score them with the shipped weights."""
    from pipeline.training import metrics, synthetic, validate
    from pipeline.training.triplets import read_triplets

    spec = synthetic.parse("synthetic:samples")  # the photos and settings of the synthetic stage
    held = synthetic.SyntheticSpec(photos=("chelsea", "rocket"), sides=spec.sides, seed=spec.seed)
    df = read_triplets(synthetic.generate(held, str(tmp_path / "heldout"), log=lambda _: None))
    assert len(df) == shipped.metadata["data"]["validation"]["triplets"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logits = validate.score_frame(shipped.model, df)
    finally:
        torch.set_num_threads(threads)
    measured = metrics.summarize(df.assign(logit=[logits[i] for i in range(len(df))]))
    assert measured["accuracy"] == pytest.approx(card_number("Synthetic held-out accuracy"), abs=TOLERANCE)
    for fam, m in shipped.metadata["validation"]["per_family"].items():
        assert measured["per_family"][fam]["accuracy"] == pytest.approx(m["accuracy"], abs=3 * TOLERANCE)


@pytest.mark.slow
def test_evaluate_uses_it_by_default_and_records_its_sha256(ray_local, tmp_path):
    from jobs import evaluate
    from pipeline.codecs import get_codec
    from pipeline.image.samples import load_sample
    from pipeline.scoring import results

    ref = load_sample("coffee", max_side=160)
    storage.write_bytes(str(tmp_path / "ref.png"), decoding.encode_png(ref))
    jpeg, rows = get_codec("jpeg"), []
    for q in (15, 50, 90):
        data = jpeg.encode(ref, q)
        storage.write_bytes(str(tmp_path / f"q{q}.png"), decoding.encode_png(jpeg.decode(data)))
        rows.append(
            {
                "ref_id": "coffee",
                "ref_uri": "ref.png",
                "dist_id": f"q{q}",
                "dist_uri": f"q{q}.png",
                "codec": "jpeg",
                "setting": f"q={q}",
                "bytes": len(data),
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out = str(tmp_path / "results")
    assert (
        evaluate.main(["--manifest", str(tmp_path / "manifest.csv"), "--output", out, "--no-progress"]) == 0
    )
    sha = storage.sha256_of(default_checkpoint("prfnet-tiny"))
    assert results.read_run(out)["checkpoint_sha256"] == sha
    pairs = results.read_table(out, "pairs").set_index(["a_id", "b_id"])
    assert set(pairs["checkpoint_sha256"]) == {sha}
    # and it means something: the higher JPEG quality is preferred in every pair
    p = {(min(a, b), max(a, b)): (v if a < b else 1 - v) for (a, b), v in pairs["p_a"].items()}
    assert p[("q15", "q50")] < 0.5 and p[("q15", "q90")] < 0.5 and p[("q50", "q90")] < 0.5
