"""`prfeval train` end to end on Ray Train: 2 CPU workers, a generated 2AFC set with a learnable rule, S3 output.

The rule: a smooth random texture, blurred, and the same texture with Gaussian noise of the same mean squared error;
the noisy version is the closer one (soft labels 0.9 / 0.1, as if 90% of raters agreed). Pixel distance cannot tell
the two apart (PSNR is at chance by construction) and the untrained network prefers the blurred one, so held-out
accuracy well above chance is learned. Four of the sixteen textures are held out.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from jobs import train as train_job
from model import load_checkpoint
from pipeline.image import decoding
from pipeline.io import storage
from pipeline.training import metrics, synthetic, validate
from pipeline.training.triplets import read_triplets

BLUR = (0.8, 1.3, 2.0, 3.0)
HOLDOUT = "tex12,tex13,tex14,tex15"


def texture(seed: int, size: int = 96) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=(size, size, 3)), sigma=(3, 3, 0))
    x = (x - x.min()) / (x.max() - x.min())
    return np.clip(np.rint(30 + 195 * x), 0, 255).astype(np.uint8)


def mse(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((x.astype(np.float64) - y) ** 2))


def make_set(base: str, n_refs: int = 16) -> str:
    """References, blurred and equally distant noisy versions, a CSV table (relative URIs); returns its URI."""
    rows = []
    for i in range(n_refs):
        ref_id = f"tex{i:02d}"
        ref = texture(i)
        storage.write_bytes(storage.join(base, ref_id, "ref.png"), decoding.encode_png(ref))
        rng = np.random.default_rng(1000 + i)
        for k, sigma in enumerate(BLUR):
            blurred = synthetic.blur(ref, sigma)
            noisy = synthetic.noise(ref, mse(blurred, ref) ** 0.5, rng)
            assert abs(mse(noisy, ref) / mse(blurred, ref) - 1) < 0.1
            storage.write_bytes(storage.join(base, ref_id, f"blur{k}.png"), decoding.encode_png(blurred))
            storage.write_bytes(storage.join(base, ref_id, f"noise{k}.png"), decoding.encode_png(noisy))
            a, b = ("noise", "blur") if (i + k) % 2 else ("blur", "noise")
            rows.append(
                {
                    "ref_id": ref_id,
                    "ref_uri": f"{ref_id}/ref.png",
                    "a_uri": f"{ref_id}/{a}{k}.png",
                    "b_uri": f"{ref_id}/{b}{k}.png",
                    "label": 0.9 if a == "noise" else 0.1,
                    "family": "blur-vs-noise",
                }
            )
    uri = storage.join(base, "triplets.csv")
    storage.write_text(uri, pd.DataFrame(rows).to_csv(index=False))
    return uri


def s3_keys(s3, prefix: str) -> set[str]:
    return {k.split(f"{s3.bucket}/", 1)[1] for k in s3.fs.find(f"{s3.bucket}/{prefix}")}


def argv(triplets: str, output: str, tmp_path, *extra: str) -> list[str]:
    return [
        "--triplets",
        triplets,
        "--output",
        output,
        "--model",
        "prfnet-tiny",
        "--workers",
        "2",
        "--crop",
        "64",
        "--crops-per-triplet",
        "4",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "5",
        "--holdout",
        HOLDOUT,
        "--ray-storage",
        str(tmp_path / "ray"),
        "--log-every",
        "5",
        *extra,
    ]


def heldout_accuracy(checkpoint: str, triplets: str, seed: int | None = None) -> dict:
    """The held-out metrics of a checkpoint (or of untrained weights with ``seed``), computed here, not by train."""
    from model import create_model

    df = read_triplets(triplets)
    df = df[df["ref_id"].isin(HOLDOUT.split(","))].reset_index(drop=True)
    if seed is None:
        net = load_checkpoint(checkpoint).model
    else:
        torch.manual_seed(seed)
        net = create_model("prfnet-tiny").eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logits = validate.score_frame(net, df)
    finally:
        torch.set_num_threads(threads)
    return metrics.summarize(df.assign(logit=[logits[i] for i in range(len(df))]))


@pytest.mark.slow
def test_training_learns_the_rule_writes_s3_checkpoints_and_resumes(ray_local, s3, tmp_path, capsys):
    triplets = make_set(s3.uri("data"))
    out = s3.uri("run")

    assert train_job.main(argv(triplets, out, tmp_path, "--epochs", "2")) == 0
    printed = capsys.readouterr().out
    run = json.loads(storage.read_text(storage.join(out, "train.json")))
    assert run["epochs_done"] == 2 and [h["epoch"] for h in run["history"]] == [1, 2]
    assert run["data"]["validation"]["reference_ids"] == HOLDOUT.split(",")
    assert run["data"]["validation"]["triplets"] == 16 and run["data"]["train"]["triplets"] == 48
    assert run["data"]["label_kind"] == "soft"
    assert "epoch 2/2: train loss" in printed and "held-out validation" in printed

    # held-out accuracy well above chance, and the run reports what an independent scoring of its checkpoint gives
    final = storage.join(out, "prfnet-tiny.safetensors")
    measured = heldout_accuracy(final, triplets)
    untrained = heldout_accuracy(final, triplets, seed=0)
    assert measured["accuracy"] >= 0.85
    assert measured["accuracy"] >= untrained["accuracy"] + 0.5  # learned, not there from the start
    assert measured["bce"] < untrained["bce"] - 0.1
    reported = run["history"][-1]["validation"]
    assert reported["accuracy"] == pytest.approx(measured["accuracy"], abs=1e-9)
    assert reported["bce"] == pytest.approx(measured["bce"], rel=1e-4)
    assert f"held-out accuracy {measured['accuracy']:.4f}" in printed

    # checkpoints land in S3: one per epoch with the optimizer state, and the latest as <model>.safetensors
    keys = s3_keys(s3, "run")
    for epoch in (1, 2):
        assert f"run/checkpoints/epoch-{epoch:04d}.safetensors" in keys
        assert f"run/checkpoints/epoch-{epoch:04d}.optim.safetensors" in keys
    assert {"run/train.json", "run/triplets.parquet", "run/prfnet-tiny.safetensors"} <= keys
    # the held-out logits of every validated epoch, one row per held-out triplet, as the summary counts them
    for epoch in (1, 2):
        assert f"run/validation/epoch-{epoch:04d}.parquet" in keys
    logits = pd.read_parquet(
        io.BytesIO(storage.read_bytes(storage.join(out, "validation", "epoch-0002.parquet")))
    )
    assert len(logits) == 16 and set(logits["ref_id"]) == set(HOLDOUT.split(","))
    assert metrics.summarize(logits)["accuracy"] == pytest.approx(reported["accuracy"], abs=1e-9)
    ck = load_checkpoint(final, expected_model="prfnet-tiny")
    assert ck.metadata["epoch"] == 2 and ck.sha256 == run["latest"]["sha256"]
    assert ck.metadata["data"]["source"] == storage.display(triplets)
    assert ck.metadata["validation"]["accuracy"] == reported["accuracy"]
    first = storage.sha256_of(storage.join(out, "checkpoints", "epoch-0001.safetensors"))

    # without --resume the run folder is refused; with other settings --resume is refused
    assert train_job.main(argv(triplets, out, tmp_path, "--epochs", "3")) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert train_job.main([*argv(triplets, out, tmp_path, "--epochs", "3", "--resume"), "--lr", "1e-2"]) == 2
    assert "lr differ" in capsys.readouterr().err

    # --resume continues the epoch count from the last checkpoint
    assert train_job.main(argv(triplets, out, tmp_path, "--epochs", "3", "--resume")) == 0
    printed = capsys.readouterr().out
    assert "2 epoch(s) done, continuing to 3" in printed
    resumed = json.loads(storage.read_text(storage.join(out, "train.json")))
    assert resumed["run_id"] == run["run_id"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert [h["sha256"] for h in resumed["history"][:2]] == [h["sha256"] for h in run["history"]]
    assert "run/checkpoints/epoch-0003.safetensors" in s3_keys(s3, "run")
    assert storage.sha256_of(storage.join(out, "checkpoints", "epoch-0001.safetensors")) == first
    assert load_checkpoint(final).metadata["epoch"] == 3
    assert resumed["history"][-1]["validation"]["accuracy"] >= 0.85

    # asking for epochs already done does nothing
    assert train_job.main(argv(triplets, out, tmp_path, "--epochs", "3", "--resume")) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, capsys):
    triplets = make_set(str(tmp_path / "data"), n_refs=3)
    out = str(tmp_path / "run")
    base = ["--output", out, "--model", "prfnet-tiny", "--ray-storage", str(tmp_path / "ray")]
    assert train_job.main(["--triplets", str(tmp_path / "none.csv"), *base]) == 2
    assert "no such file" in capsys.readouterr().err
    assert train_job.main(["--triplets", triplets, *base, "--holdout", "tex1"]) == 2
    assert "did you mean 'tex01'" in capsys.readouterr().err
    assert train_job.main(["--triplets", triplets, *base, "--model", "prfnet-tinny"]) == 2
    assert "prfnet-tiny" in capsys.readouterr().err
    assert train_job.main(["--triplets", triplets, *base, "--pretrained"]) == 2
    assert "ImageNet weights exist only for the unmodified" in capsys.readouterr().err
    assert train_job.main(["--triplets", triplets, *base, "--workers", "0"]) == 2
    assert train_job.main(["--triplets", triplets, *base, "--label-smoothing", "1"]) == 2
    assert train_job.main(["--triplets", triplets, *base, "--val-every", "0"]) == 2
    assert (
        train_job.main(["--triplets", triplets, *base, "--init-checkpoint", str(tmp_path / "none.st")]) == 2
    )
    assert "none.st" in capsys.readouterr().err
    assert not storage.exists(storage.join(out, "train.json"))
