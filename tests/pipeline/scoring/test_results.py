"""group_tables (columns, Bradley–Terry scores, errors and extras carried) and the codec-metadata join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.io import schemas
from pipeline.io.records import ErrorRow
from pipeline.scoring.load import MeasuredImage
from pipeline.scoring.results import ScoredGroup, group_tables, join_codecs


def image(dist_id: str, codec: str, bpp: float, **extras) -> MeasuredImage:
    return MeasuredImage(dist_id=dist_id, dist_uri=f"/x/{dist_id}.png", codec=codec, codec_version="1",
                         setting="q", bytes=int(bpp * 1000), width=40, height=25, bpp=bpp,
                         metrics={"psnr": 30.0, "psnr_y": 31.0, "ms_ssim": 0.9}, extras=extras)  # fmt: skip


def scored(**kw) -> ScoredGroup:
    base = dict(
        ref_id="r", ref_uri="/x/r.png", key="g-1",
        dists=[image("a", "jpeg", 0.5, lab="x"), image("b", "webp", 0.6, lab="y"), image("c", "jpeg", 0.7)],
        errors=[ErrorRow.make("load", "missing", "gone", ref_id="r", dist_id="z", uri="/x/z.png")],
        pairs=[(0, 1), (1, 2), (0, 2)], logits=np.array([1.0, -0.5, 0.25]),
        model="prfnet-tiny", checkpoint_sha256="abc", n_patches=4,
    )  # fmt: skip
    return ScoredGroup(**{**base, **kw})


def test_tables_have_the_declared_columns_and_values():
    t = group_tables(scored(), run_id="run-1")
    images, pairs, errors = (t[n].to_pandas() for n in ("images", "pairs", "errors"))
    assert t["images"].schema.names[: len(schemas.IMAGES)] == schemas.IMAGES.names
    assert t["pairs"].schema.names[: len(schemas.PAIRS)] == schemas.PAIRS.names
    assert list(images.dist_id) == ["a", "b", "c"] and set(images.run_id) == {"run-1"}
    assert list(pairs.a_id) == ["a", "b", "a"] and list(pairs.b_id) == ["b", "c", "c"]
    np.testing.assert_allclose(pairs.p_a, 1 / (1 + np.exp(-np.array([1.0, -0.5, 0.25]))))
    assert (
        set(pairs.n_patches) == {4}
        and set(pairs.model) == {"prfnet-tiny"}
        and set(pairs.a_codec) <= {"jpeg", "webp"}
    )
    assert images.prf_score.notna().all() and list(images.n_pairs) == [2, 2, 2]
    assert images.set_index("dist_id").prf_score["a"] > images.set_index("dist_id").prf_score["c"]
    assert images.psnr.tolist() == [30.0] * 3 and images.bpp.tolist() == [0.5, 0.6, 0.7]
    assert (
        list(errors.dist_id) == ["z"]
        and errors.run_id.tolist() == ["run-1"]
        and errors.error.tolist() == ["missing"]
    )


def test_extras_are_carried_as_columns():
    images = group_tables(scored(), run_id="r").pop("images").to_pandas()
    assert images.lab.tolist()[:2] == ["x", "y"] and pd.isna(images.lab.tolist()[2])


def test_an_image_without_pairs_has_no_score():
    t = group_tables(scored(pairs=[(0, 1)], logits=np.array([0.3])), run_id="r")
    images = t["images"].to_pandas().set_index("dist_id")
    assert pd.isna(images.prf_score["c"]) and images.n_pairs["c"] == 0 and images.prf_score.notna().sum() == 2


def test_no_pairs_gives_empty_pairs_with_schema():
    t = group_tables(scored(pairs=[], logits=np.zeros(0)), run_id="r")
    assert t["pairs"].num_rows == 0 and t["pairs"].schema.names[: len(schemas.PAIRS)] == schemas.PAIRS.names
    assert t["images"].num_rows == 3


def test_codec_metadata_is_joined_on_codec_and_version():
    codecs = pd.DataFrame(
        {"codec": ["jpeg", "webp"], "codec_version": ["1", "2"], "library": ["libjpeg", "libwebp"]}
    )
    t = group_tables(scored(), run_id="r", codec_table=codecs)
    images = t["images"].to_pandas().set_index("dist_id")
    assert images.library["a"] == "libjpeg" and pd.isna(images.library["b"])  # webp 1 is not in the table
    pairs = t["pairs"].to_pandas()
    assert pairs.a_library.fillna("-").tolist() == ["libjpeg", "-", "libjpeg"]  # A of the 2nd pair is webp 1
    assert pairs.b_library.fillna("-").tolist() == ["-", "libjpeg", "libjpeg"]


def test_join_prefixes_and_a_name_clash_gets_the_codec_prefix():
    t = group_tables(scored(), run_id="r")
    codecs = pd.DataFrame(
        {"codec": ["jpeg"], "codec_version": ["1"], "setting": ["from-table"], "speed": [3]}
    )
    images = join_codecs(t["images"], codecs).to_pandas()
    assert images.setting.tolist() == ["q", "q", "q"]  # the image's own column is kept
    assert images.codec_setting.tolist()[0] == "from-table" and images.speed.tolist()[0] == 3
    pairs = join_codecs(t["pairs"], codecs, prefixes=("a_", "b_")).to_pandas()
    assert pairs.a_setting.tolist() == ["q"] * 3 and pairs.a_codec_setting.tolist()[0] == "from-table"
    assert pairs.b_speed.tolist()[1] == 3 and pd.isna(pairs.b_speed.tolist()[0])
    assert join_codecs(t["images"], codecs).schema.names[: len(schemas.IMAGES)] == schemas.IMAGES.names


def test_scored_group_mismatch_of_pairs_and_logits_is_refused():
    with pytest.raises(ValueError):
        group_tables(scored(logits=np.array([1.0])), run_id="r")
