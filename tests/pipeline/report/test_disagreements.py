"""Disagreements between PRFNet and PSNR: which pairs, in what order, and crops of the same box of O, A and B."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.report import disagreements as dis


def _tables(p_a, psnr_a, psnr_b) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(p_a)
    images = pd.DataFrame(
        {
            "ref_id": ["r"] * (2 * n),
            "dist_id": [f"a{k}" for k in range(n)] + [f"b{k}" for k in range(n)],
            "psnr": list(psnr_a) + list(psnr_b),
            "dist_uri": [f"/x/a{k}.png" for k in range(n)] + [f"/x/b{k}.png" for k in range(n)],
            "ref_uri": ["/x/r.png"] * (2 * n),
        }
    )
    pairs = pd.DataFrame(
        {
            "ref_id": ["r"] * n,
            "a_id": [f"a{k}" for k in range(n)],
            "b_id": [f"b{k}" for k in range(n)],
            "a": ["jpeg"] * n,
            "b": ["webp"] * n,
            "a_bpp": [0.5] * n,
            "b_bpp": [0.6] * n,
            "p_a": p_a,
        }
    )
    return images, pairs


def test_only_opposite_judgments_count_strongest_first():
    # pair 0 agrees (both prefer A); 1 and 2 disagree; 3 has no PRFNet preference; 4 has equal PSNR
    images, pairs = _tables(
        p_a=[0.9, 0.8, 0.3, 0.5, 0.95],
        psnr_a=[35.0, 30.0, 40.0, 30.0, 31.0],
        psnr_b=[30.0, 31.0, 30.0, 35.0, 31.0],
    )
    top = dis.find(images, pairs, 10)
    assert list(top["a_id"]) == ["a2", "a1"]  # 0.2 * 10 dB > 0.3 * 1 dB
    assert top["score"].tolist() == pytest.approx([0.2 * 10.0, 0.3 * 1.0])
    assert top.iloc[0][["prf_prefers", "psnr_prefers"]].tolist() == ["B", "A"]
    assert top.iloc[0]["a_uri"] == "/x/a2.png" and top.iloc[0]["ref_uri"] == "/x/r.png"
    assert len(dis.find(images, pairs, 1)) == 1 and dis.find(images, pairs, 0).empty


def test_an_infinite_psnr_is_capped():
    images, pairs = _tables(p_a=[0.2], psnr_a=[np.inf], psnr_b=[40.0])
    top = dis.find(images, pairs, 5)
    assert top["score"].tolist() == pytest.approx([0.3 * (dis.PSNR_CAP - 40.0)])


def test_box_is_where_the_images_differ_most():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    b = a.copy()
    b[50:70, 80:100] = 255 - b[50:70, 80:100]  # a 20 x 20 block differs strongly
    b[:5, :5] ^= 1  # and a faint difference elsewhere
    x, y, w, h = dis.most_different_box(a, b, size=20)
    assert (x, y, w, h) == (80, 50, 20, 20)
    # a window larger than the image shrinks to the image's smaller side
    assert dis.most_different_box(a, b, size=500)[2:] == (90, 90)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_crops_cut_the_same_box_from_all_three(tmp_path):
    rng = np.random.default_rng(1)
    o = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    a = o.copy()
    b = o.copy()
    b[10:26, 40:56] = 0
    for name, arr in (("o", o), ("a", a), ("b", b)):
        (tmp_path / f"{name}.png").write_bytes(_png(arr))
    crops = dis.crops(str(tmp_path / "o.png"), str(tmp_path / "a.png"), str(tmp_path / "b.png"), size=16)
    assert crops.error is None and crops.box == (40, 10, 16, 16)
    for data, arr in ((crops.o, o), (crops.a, a), (crops.b, b)):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), arr[10:26, 40:56])


def test_unreadable_images_give_a_reason_not_an_exception(tmp_path):
    (tmp_path / "o.png").write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))
    crops = dis.crops(str(tmp_path / "o.png"), str(tmp_path / "missing.png"), str(tmp_path / "o.png"))
    assert crops.box is None and "no such file" in crops.error
    (tmp_path / "small.png").write_bytes(_png(np.zeros((4, 8, 3), np.uint8)))
    crops = dis.crops(str(tmp_path / "o.png"), str(tmp_path / "small.png"), str(tmp_path / "o.png"))
    assert crops.box is None and "sizes differ" in crops.error
