"""The pure parts of training: triplet inputs, the split by reference, augmentation, epoch shares, metrics,
optimizer state files, the learning-rate schedule, the synthetic set and the logits the loss sees."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.image import decoding
from pipeline.io import storage
from pipeline.training import augment, data, metrics, splits, state, synthetic
from pipeline.training.config import TrainConfig, learning_rate
from pipeline.training.triplets import TripletError, read_triplets

CLIC_DIR = Path(
    os.environ.get("PRFEVAL_CLIC_DATA", Path(__file__).resolve().parents[2] / "data" / "clic2021")
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- inputs


def test_table_with_soft_labels_resolves_relative_uris(tmp_path):
    df = pd.DataFrame(
        {
            "ref_uri": ["r/1.png", "r/1.png", "/abs/2.png"],
            "a_uri": ["d/a.png", "d/b.png", "s3://bucket/x.png"],
            "b_uri": ["d/b.png", "d/c.png", "d/y.png"],
            "label": [0.75, 0.0, 1.0],
            "family": ["jpeg", "blur", None],
        }
    )
    uri = str(tmp_path / "t.csv")
    df.to_csv(uri, index=False)
    out = read_triplets(uri)
    assert list(out["ref_uri"]) == [str(tmp_path / "r/1.png"), str(tmp_path / "r/1.png"), "/abs/2.png"]
    assert out["a_uri"].iloc[2] == "s3://bucket/x.png"
    assert list(out["label"]) == [0.75, 0.0, 1.0]
    assert list(out["ref_id"]) == list(out["ref_uri"])  # the split unit defaults to the reference image
    assert list(out["family"]) == ["jpeg", "blur", ""]
    assert out["a_bpp"].isna().all()
    assert list(out["weight"]) == [1.0, 1.0, 1.0]  # no weight column: every triplet weighs 1
    # Parquet reads the same, and --images overrides the base folder
    df.to_parquet(tmp_path / "t.parquet")
    again = read_triplets(str(tmp_path / "t.parquet"), images="/data")
    assert again["a_uri"].iloc[0] == "/data/d/a.png"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"ref_uri": ["r"], "a_uri": ["a"], "label": [1]}, "missing column(s) b_uri"),
        (
            {"ref_uri": ["r"], "a_uri": ["a"], "b_uri": ["b"], "label": [1.5]},
            "label must be a number in [0, 1]",
        ),
        ({"ref_uri": ["r"], "a_uri": ["a"], "b_uri": ["b"], "label": ["yes"]}, "label must be a number"),
        ({"ref_uri": [""], "a_uri": ["a"], "b_uri": ["b"], "label": [1]}, "empty ref_uri on row(s) 2"),
        (
            {"ref_uri": ["r"], "a_uri": ["a"], "b_uri": ["b"], "label": [1], "split": ["test"]},
            "split must be",
        ),
        (
            {"ref_uri": ["r"], "a_uri": ["a"], "b_uri": ["b"], "label": [1], "weight": [-2]},
            "weight must be a finite number >= 0 on row(s) 2",
        ),
    ],
)
def test_bad_tables_are_refused_with_the_reason(tmp_path, frame, message):
    uri = str(tmp_path / "t.parquet")
    pd.DataFrame(frame).to_parquet(uri)
    with pytest.raises(
        TripletError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        read_triplets(uri)


def test_a_weight_column_is_kept(tmp_path):
    uri = str(tmp_path / "t.parquet")
    pd.DataFrame(
        {
            "ref_uri": ["r", "r"],
            "a_uri": ["a", "c"],
            "b_uri": ["b", "d"],
            "label": [0.6, 1.0],
            "weight": [12, 0],
        }
    ).to_parquet(uri)
    assert list(read_triplets(uri)["weight"]) == [12.0, 0.0]


def test_clic_csv_becomes_soft_labels_per_unordered_pair(tmp_path):
    csv = "o.png,a.png,b.png,0\no.png,b.png,a.png,0\no.png,a.png,b.png,0\no.png,a.png,c.png,1\np.png,x.png,x.png,0\n"
    uri = str(tmp_path / "clic.csv")
    storage.write_text(uri, csv)
    out = read_triplets(uri, images="s3://bucket/imgs")
    assert len(out) == 2  # (a, b) merged across orientations; the x-vs-x row carries no information
    ab = out[(out["a_uri"] == "s3://bucket/imgs/a.png") & (out["b_uri"] == "s3://bucket/imgs/b.png")].iloc[0]
    assert ab["label"] == pytest.approx(2 / 3)  # two rows prefer a, the reversed one prefers b
    assert ab["votes"] == 3
    assert ab["ref_id"] == "o.png" and ab["ref_uri"] == "s3://bucket/imgs/o.png"
    ac = out[out["b_uri"].str.endswith("c.png")].iloc[0]
    assert ac["label"] == 0.0


def test_real_clic_oracle_reads_as_triplets():
    if not (CLIC_DIR / "oracle.csv").is_file():
        pytest.skip(f"CLIC 2021 data not found at {CLIC_DIR} (set PRFEVAL_CLIC_DATA)")
    out = read_triplets(str(CLIC_DIR / "oracle.csv"), images="/imgs")
    assert out["ref_id"].nunique() == 315
    assert ((out["label"] >= 0) & (out["label"] <= 1)).all()
    assert (out["votes"].sum(), len(out)) == (5218, 4810)  # 5220 rows, 2 with A == B; 4810 unordered pairs
    assert (
        (out["label"] > 0) & (out["label"] < 1)
    ).sum() > 0  # the conflicting duplicates became soft labels


# ---------------------------------------------------------------------------------------------- split


def _frame(refs: list[str], per_ref: int = 3) -> pd.DataFrame:
    rows = [{"ref_id": r, "label": 1.0, "split": None} for r in refs for _ in range(per_ref)]
    return pd.DataFrame(rows)


def test_split_keeps_each_reference_on_one_side_and_ignores_row_order():
    refs = [f"img{i:02d}" for i in range(30)]
    df = _frame(refs)
    a = splits.assign(df, val_fraction=0.2, seed=3)
    b = splits.assign(df.sample(frac=1, random_state=1), val_fraction=0.2, seed=3)
    assert (a.groupby("ref_id")["split"].nunique() == 1).all()
    val_a = set(a.loc[a["split"] == "val", "ref_id"])
    assert val_a == set(b.loc[b["split"] == "val", "ref_id"])
    assert len(val_a) == 6
    assert set(splits.assign(df, val_fraction=0.2, seed=4).query("split == 'val'")["ref_id"]) != val_a


def test_split_by_holdout_and_by_column_and_the_refusals():
    df = _frame(["astronaut", "chelsea", "coffee"])
    out = splits.assign(df, holdout=["chelsea"])
    assert set(out.loc[out["split"] == "val", "ref_id"]) == {"chelsea"}
    with pytest.raises(splits.SplitError, match="did you mean 'chelsea'"):
        splits.assign(df, holdout=["chelsee"])
    with pytest.raises(splits.SplitError, match="no training triplets"):
        splits.assign(df, holdout=["astronaut", "chelsea", "coffee"])
    given = df.assign(split=["train", "train", "train", "val", "val", "val", "train", "train", "val"])
    with pytest.raises(splits.SplitError, match="both sides"):
        splits.assign(given)
    given["split"] = ["train"] * 3 + ["val"] * 3 + ["train"] * 3
    assert list(splits.assign(given)["split"]) == list(given["split"])
    assert (splits.assign(_frame(["only"]))["split"] == "train").all()  # one reference: nothing to hold out


# ---------------------------------------------------------------------------------------------- augmentation


def test_augmentation_crops_o_a_b_at_one_place_and_swap_flips_the_label():
    rng = np.random.default_rng(0)
    o = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    a, b = (o + 1).astype(np.uint8), (o + 2).astype(np.uint8)
    seen_swap = seen_keep = False
    for seed in range(40):
        p = augment.draw(np.random.default_rng(seed), 50, 70, 32)
        assert 0 <= p.top <= 18 and 0 <= p.left <= 38
        o2, a2, b2, label = augment.apply(o, a, b, 0.8, p, 32)
        assert o2.shape == a2.shape == b2.shape == (32, 32, 3)
        expected = o[p.top : p.top + 32, p.left : p.left + 32]
        expected = expected[:, ::-1] if p.hflip else expected
        expected = expected[::-1] if p.vflip else expected
        np.testing.assert_array_equal(o2, expected)
        closer, farther = (b2, a2) if p.swap else (a2, b2)
        np.testing.assert_array_equal(closer, (expected + 1).astype(np.uint8))
        np.testing.assert_array_equal(farther, (expected + 2).astype(np.uint8))
        assert label == pytest.approx(0.2 if p.swap else 0.8)
        seen_swap |= p.swap
        seen_keep |= not p.swap
    assert seen_swap and seen_keep


def test_images_smaller_than_the_crop_are_padded():
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    p = augment.draw(np.random.default_rng(0), 20, 40, 32)
    o2, *_ = augment.apply(img, img, img, 1.0, p, 32)
    assert o2.shape == (32, 32, 3) and p.top == 0


# ---------------------------------------------------------------------------------------------- epoch shares


@pytest.mark.parametrize(("n", "k", "world"), [(10, 1, 2), (7, 3, 2), (5, 2, 3), (4, 1, 1)])
def test_epoch_shares_are_equal_cover_everything_and_are_seeded(n, k, world):
    shares = [
        data.epoch_indices(n, crops_per_triplet=k, epoch=2, seed=5, rank=r, world=world) for r in range(world)
    ]
    assert len({len(s) for s in shares}) == 1
    assert set().union(*shares) == set(range(n * k))
    assert sum(len(s) for s in shares) - n * k < world  # only the wrap-around padding repeats
    assert shares[0] == data.epoch_indices(n, crops_per_triplet=k, epoch=2, seed=5, rank=0, world=world)
    assert data.steps_per_epoch(n, crops_per_triplet=k, world=world, batch_size=4) == math.ceil(
        len(shares[0]) / 4
    )
    if n * k > 3:
        other = data.epoch_indices(n, crops_per_triplet=k, epoch=3, seed=5, rank=0, world=world)
        assert other != shares[0]  # a new order every epoch


def _write_triplet(folder, size=(40, 48)) -> dict:
    rng = np.random.default_rng(0)
    o = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    out = {}
    for name, img in (("ref_uri", o), ("a_uri", o // 2), ("b_uri", 255 - o)):
        uri = str(folder / f"{name}.png")
        storage.write_bytes(uri, decoding.encode_png(img))
        out[name] = uri
    return {**out, "label": 1.0}


def test_samples_are_the_same_whoever_draws_them(tmp_path):
    row = _write_triplet(tmp_path)
    ds = data.TripletSamples([row], crop=32, seed=1)
    o, a, b, y, w = ds[(3, 5)]
    assert float(w) == 1.0  # a row without a weight weighs 1
    assert o.shape == (3, 32, 32) and o.dtype == torch.float32 and 0 <= float(o.min()) <= float(o.max()) <= 1
    again = data.TripletSamples([row], crop=32, seed=1)[(3, 5)]
    for x, z in zip((o, a, b, y, w), again, strict=True):
        assert torch.equal(x, z)
    batch = next(iter(data.loader(ds, [0, 1, 2], epoch=1, batch_size=3)))
    assert [t.shape[0] for t in batch] == [3, 3, 3, 3, 3]
    weighted = data.TripletSamples([row | {"weight": 7.0}], crop=32, seed=1)[(3, 5)]
    assert float(weighted[4]) == 7.0 and torch.equal(weighted[0], o)
    in_processes = next(iter(data.loader(ds, [0, 1, 2], epoch=1, batch_size=3, workers=2)))
    for x, z in zip(batch, in_processes, strict=True):
        assert torch.equal(x, z)


def test_a_missing_training_image_names_the_file(tmp_path):
    row = _write_triplet(tmp_path) | {"b_uri": str(tmp_path / "gone.png")}
    with pytest.raises(RuntimeError, match=r"gone\.png"):
        data.TripletSamples([row], crop=32, seed=1)[(1, 0)]


def test_image_cache_evicts_beyond_its_budget(tmp_path):
    row = _write_triplet(tmp_path)
    cache = data.ImageCache(max_bytes=40 * 48 * 3 * 2)
    for k in ("ref_uri", "a_uri", "b_uri", "ref_uri"):
        cache.get(row[k])
    assert set(cache._items) == {row["b_uri"], row["ref_uri"]}


# ---------------------------------------------------------------------------------------------- metrics


def test_metrics_by_hand():
    frame = pd.DataFrame(
        {
            "label": [1.0, 0.0, 0.7, 0.5, 1.0, 0.2],
            "logit": [2.0, 1.0, 0.5, 3.0, 0.0, -1.0],
            "family": ["a", "a", "b", "b", "b", "c"],
            "a_bpp": [0.1, 0.1, 0.6, np.nan, 0.3, 1.0],
            "b_bpp": [0.3, 0.3, 0.8, np.nan, 0.1, 3.0],
        }
    )
    m = metrics.summarize(frame)
    # decided rows (label != 0.5): right, wrong, right, tie (half), right
    assert m["accuracy"] == pytest.approx((1 + 0 + 1 + 0.5 + 1) / 5)
    assert m["two_afc"] == pytest.approx((1 + 0 + 0.7 + 0.5 + 0.5 + 0.8) / 6)
    p = 1 / (1 + np.exp(-frame["logit"]))
    bce = -(frame["label"] * np.log(p) + (1 - frame["label"]) * np.log(1 - p))
    assert m["bce"] == pytest.approx(bce.mean())
    assert m["per_family"]["a"]["accuracy"] == 0.5 and m["per_family"]["c"]["n"] == 1
    # rows whose two rates are known, by their mean bpp: 0.2, 0.2, 0.7, 0.2, 2.0
    assert {b["bucket"]: b["n"] for b in m["per_bpp"]} == {"0–0.25 bpp": 3, "0.5–1 bpp": 1, "2–∞ bpp": 1}
    assert m["per_bpp"][-1]["high"] is None


# ---------------------------------------------------------------------------------------------- state


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    uri = str(tmp_path / "o.safetensors")
    state.save_optimizer(opt, uri)
    assert storage.read_bytes(uri)[:1] != b"\x80"  # not a pickle
    fresh = torch.optim.AdamW(net.parameters(), lr=0.5)
    state.load_optimizer(fresh, uri)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key, value in a["state"][idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][key]))


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(triplets="t", output="o", lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [learning_rate(cfg, s, 200) for s in range(200)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(x >= y for x, y in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)


# ---------------------------------------------------------------------------------------------- synthetic


def test_synthetic_uri_parsing():
    spec = synthetic.parse("synthetic:samples:coffee,astronaut?sides=96,128&seed=4")
    assert spec == synthetic.SyntheticSpec(photos=("coffee", "astronaut"), sides=(96, 128), seed=4)
    assert synthetic.parse(spec.uri) == spec
    assert len(synthetic.parse("synthetic:samples").photos) == 8
    for bad, msg in [
        ("synthetic:cats", "expected synthetic:samples"),
        ("synthetic:samples:cofee", "did you mean 'coffee'"),
        ("synthetic:samples?sides=12", "at least 64"),
        ("synthetic:samples?size=100", "unknown synthetic option"),
    ]:
        with pytest.raises(synthetic.SyntheticError, match=msg):
            synthetic.parse(bad)


def test_synthetic_labels_follow_the_distortion_strength(tmp_path):
    """Every labelled-closer image is closer in PSNR too; labels are balanced; regenerating reuses the folder."""
    spec = synthetic.parse("synthetic:samples:coffee?sides=96")
    folder = str(tmp_path / "syn")
    uri = synthetic.generate(spec, folder, log=lambda _: None)
    df = read_triplets(uri)
    n_pairs = 15 * (len(synthetic.CODEC_LADDERS) + len(synthetic.CLASSIC_LADDERS))
    assert len(df) == n_pairs and set(df["label"]) == {0.0, 1.0}
    assert 0.3 < df["label"].mean() < 0.7
    assert df.loc[df["family"] == "jpeg", "a_bpp"].notna().all()
    assert df.loc[df["family"] == "blur", "a_bpp"].isna().all()

    def psnr(x, y):
        return 10 * np.log10(255**2 / max(np.mean((x.astype(float) - y.astype(float)) ** 2), 1e-12))

    ref = decoding.read_image(df["ref_uri"].iloc[0])
    for r in df.itertuples():
        pa, pb = psnr(ref, decoding.read_image(r.a_uri)), psnr(ref, decoding.read_image(r.b_uri))
        assert (pa > pb) == (r.label == 1.0), (r.a_uri, r.b_uri, pa, pb)
    stamp = storage.read_bytes(uri)
    assert synthetic.generate(spec, folder, log=lambda _: None) == uri
    assert storage.read_bytes(uri) == stamp


# ---------------------------------------------------------------------------------------------- the loss's view


def test_pair_logits_are_the_models_training_logits():
    from model import create_model
    from pipeline.training.loop import PairLogits

    torch.manual_seed(0)
    net = create_model("prfnet-tiny").train()
    o, a, b = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(3))
    logits = PairLogits(net)(o, a, b)
    torch.manual_seed(1)  # no randomness in the forward pass (drop_rate 0)
    p = net(o, a, b)
    torch.testing.assert_close(torch.sigmoid(logits), p, rtol=1e-5, atol=1e-6)


def test_local_paths_become_absolute_for_the_workers(tmp_path, monkeypatch):
    from pipeline.training.run import _absolute_paths

    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(triplets="data/t.csv", output="run", images="file://imgs", ray_storage="s3://b/ray")
    _absolute_paths(cfg)
    assert (cfg.triplets, cfg.output) == (str(tmp_path / "data/t.csv"), str(tmp_path / "run"))
    assert (cfg.images, cfg.ray_storage) == (str(tmp_path / "imgs"), "s3://b/ray")
    synthetic_cfg = TrainConfig(triplets="synthetic:samples", output="/abs/run")
    _absolute_paths(synthetic_cfg)
    assert (synthetic_cfg.triplets, synthetic_cfg.output) == ("synthetic:samples", "/abs/run")
