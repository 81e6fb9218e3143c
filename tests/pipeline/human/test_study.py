"""Reading a 2AFC study (pipeline.human.study): validation with clear errors, the method -> codec mapping, vote
counts per original and unordered pair, and the mucped23 answers as shipped (counts, and what answerValue means)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.codecs import parse_spec
from pipeline.human import study
from pipeline.human.study import StudyError, StudyFormat

MUCPED23 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mucped23"
needs_mucped23 = pytest.mark.skipif(
    not (MUCPED23 / "answers.csv").is_file(), reason=f"mucped23 data not found at {MUCPED23}"
)

METHODS_CSV = (
    "method,family,quality,subsampling,mean_bpp_all_49_originals\n"
    "jt-q70,libjpeg-turbo,70,420,1.1\n"
    "jt-q90,libjpeg-turbo,90,444,2.6\n"
    "mz-q80,mozjpeg,80,422,1.3\n"
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def answers_csv(rows: list[str], header: str = "methodA,methodB,originalName,answerValue") -> str:
    return header + "\n" + "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# methods


def test_method_spec_maps_families_to_prfeval_codecs():
    assert study.method_spec("libjpeg-turbo", 80, "422") == ("jpeg", "jpeg:q=80;subsampling=422;optimize=1")
    assert study.method_spec("mozjpeg", 80, "yuv422") == ("mozjpeg", "mozjpeg:q=80;subsampling=422")
    assert study.method_spec("jpegli", 80, 444) == ("jpegli", "jpegli:q=80;subsampling=444")
    with pytest.raises(StudyError, match="family 'webp' has no prfeval codec"):
        study.method_spec("webp", 80, "444")
    with pytest.raises(StudyError, match="subsampling '411'"):
        study.method_spec("jpegli", 80, "411")


def test_the_specs_parse_as_codec_settings():
    for family, sub in (("libjpeg-turbo", "422"), ("mozjpeg", "420"), ("jpegli", "444")):
        codec, spec = study.method_spec(family, 85, sub)
        (setting,) = parse_spec(spec)
        assert setting.codec == codec and setting.value == 85
        assert dict(setting.options)["subsampling"] == sub


def test_read_methods(tmp_path):
    m = study.read_methods(write(tmp_path, "methods.csv", METHODS_CSV))
    assert list(m.columns) == study.METHOD_COLUMNS
    assert m["method"].tolist() == ["jt-q70", "jt-q90", "mz-q80"]
    assert m["spec"].tolist() == [
        "jpeg:q=70;subsampling=420;optimize=1",
        "jpeg:q=90;subsampling=444;optimize=1",
        "mozjpeg:q=80;subsampling=422",
    ]
    assert m["study_bpp"].tolist() == [1.1, 2.6, 1.3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method,family,quality\nx,jpegli,80\n", "missing column.*subsampling"),
        (METHODS_CSV + "jt-q70,libjpeg-turbo,75,420,1.2\n", "'jt-q70' listed more than once"),
        (METHODS_CSV + "w,webp,75,420,1.2\n", r"method 'w' \(line 5\).*no prfeval codec"),
        (METHODS_CSV + "z,jpegli,high,420,1.2\n", "must be numbers.*line.s. 5"),
    ],
)
def test_read_methods_errors(tmp_path, text, message):
    with pytest.raises(StudyError, match=message):
        study.read_methods(write(tmp_path, "methods.csv", text))


# ----------------------------------------------------------------------------------------------------------------
# answers


def test_answer_names_the_rejected_image_in_mucped23(tmp_path):
    uri = write(tmp_path, "a.csv", answers_csv(["jt-q70,jt-q90,img1,B", "jt-q70,jt-q90,img1,A"]))
    a = study.read_answers(uri)
    assert list(a.columns) == study.ANSWER_COLUMNS
    assert a["a_wins"].tolist() == [1.0, 0.0]  # B: methodA's image was judged closer
    chosen = study.read_answers(uri, study=StudyFormat(answer_names="chosen"))
    assert chosen["a_wins"].tolist() == [0.0, 1.0]


def test_original_names_stay_text(tmp_path):
    a = study.read_answers(write(tmp_path, "a.csv", answers_csv(["jt-q70,jt-q90,0012,B"])))
    assert a["original"].tolist() == ["0012"]


def test_other_column_names(tmp_path):
    uri = write(tmp_path, "a.csv", "left,right,ref,pick\nx,y,r1,a\n")
    fmt = StudyFormat(method_a="left", method_b="right", original="ref", answer="pick", answer_names="chosen")
    a = study.read_answers(uri, study=fmt)
    assert a.to_dict("records") == [{"original": "r1", "method_a": "x", "method_b": "y", "a_wins": 1.0}]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["jt-q70,jt-q90,img1"], "methodA,methodB,originalName", "missing column.*answerValue"),
        (
            ["jt-q70,jt-q90,img1,B", "jt-q70,jt-q90,img1,C"],
            None,
            r"answerValue must be A or B on line\(s\) 3",
        ),
        (["jt-q70,jt-q90,img1,"], None, "answerValue must be A or B"),
        (["jt-q70,nope,img1,A", "nope,jt-q90,img2,B"], None, r"unknown method\(s\) nope on line\(s\) 2, 3"),
        (["jt-q70,jt-q70,img1,A"], None, "the same method on both sides on line"),
        (["jt-q70,jt-q90,,A"], None, "empty originalName on line"),
    ],
)
def test_read_answers_errors(tmp_path, rows, header, message):
    methods = study.read_methods(write(tmp_path, "methods.csv", METHODS_CSV))
    text = answers_csv(rows, header) if header else answers_csv(rows)
    with pytest.raises(StudyError, match=message):
        study.read_answers(write(tmp_path, "a.csv", text), methods=methods)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(StudyError, match="no such file"):
        study.read_answers(str(tmp_path / "absent.csv"))
    with pytest.raises(StudyError, match="empty"):
        study.read_answers(write(tmp_path, "e.csv", ""))
    with pytest.raises(StudyError, match="no rows"):
        study.read_answers(write(tmp_path, "h.csv", "methodA,methodB,originalName,answerValue\n"))


def test_parquet_answers(tmp_path):
    df = pd.DataFrame({"methodA": ["x"], "methodB": ["y"], "originalName": ["o"], "answerValue": ["B"]})
    path = tmp_path / "a.parquet"
    df.to_parquet(path)
    assert study.read_answers(str(path))["a_wins"].tolist() == [1.0]


# ----------------------------------------------------------------------------------------------------------------
# aggregation


def test_aggregate_counts_per_original_and_unordered_pair():
    answers = pd.DataFrame(
        {
            "original": ["o1", "o1", "o1", "o2", "o1"],
            "method_a": ["x", "y", "x", "x", "x"],
            "method_b": ["y", "x", "y", "y", "z"],
            "a_wins": [1.0, 1.0, 1.0, 0.0, 0.0],
        }
    )
    p = study.aggregate(answers)
    assert list(p.columns) == study.PAIR_COLUMNS
    # o1 {x, y}: x wins, y wins (row 2 is y-first), x wins -> n_a = 2 for x; o1 {x, z}: z wins; o2 {x, y}: y wins
    assert p.to_dict("records") == [
        {"original": "o1", "a": "x", "b": "y", "n_a": 2, "n_b": 1, "n": 3, "label": 2 / 3},
        {"original": "o1", "a": "x", "b": "z", "n_a": 0, "n_b": 1, "n": 1, "label": 0.0},
        {"original": "o2", "a": "x", "b": "y", "n_a": 0, "n_b": 1, "n": 1, "label": 0.0},
    ]


# ----------------------------------------------------------------------------------------------------------------
# mucped23 as shipped


@pytest.fixture(scope="module")
def mucped23():
    methods = study.read_methods(str(MUCPED23 / "methods.csv"))
    answers = study.read_answers(str(MUCPED23 / "answers.csv"), methods=methods)
    return methods, answers


@needs_mucped23
def test_mucped23_counts(mucped23):
    methods, answers = mucped23
    assert len(methods) == 31 and len(answers) == 9070
    assert answers["original"].nunique() == 33
    assert methods["family"].value_counts().to_dict() == {"jpegli": 16, "libjpeg-turbo": 9, "mozjpeg": 6}
    fa, fb = study.family_of(answers["method_a"], methods), study.family_of(answers["method_b"], methods)
    pair = ["/".join(sorted(x)) for x in zip(fa, fb, strict=True)]
    counts = pd.Series(pair).value_counts().to_dict()
    assert counts == {
        "jpegli/libjpeg-turbo": 2745,
        "jpegli/jpegli": 2339,
        "jpegli/mozjpeg": 1974,
        "libjpeg-turbo/mozjpeg": 1083,
        "libjpeg-turbo/libjpeg-turbo": 618,
        "mozjpeg/mozjpeg": 311,
    }
    # the answers between the two bit-exact families (libjpeg-turbo and mozjpeg)
    exact = fa.isin(["libjpeg-turbo", "mozjpeg"]) & fb.isin(["libjpeg-turbo", "mozjpeg"])
    assert int(exact.sum()) == 2012
    assert int(answers["a_wins"].sum()) == 5209  # answerValue B


@needs_mucped23
def test_mucped23_higher_quality_wins_within_a_family(mucped23):
    """With answerValue read as the rejected image, the higher quality of a family wins most of its comparisons
    with a lower quality of the same family and subsampling; read the other way round this fails."""
    methods, answers = mucped23
    info = methods.set_index("method")
    fam_a, fam_b = answers["method_a"].map(info["family"]), answers["method_b"].map(info["family"])
    q_a, q_b = answers["method_a"].map(info["quality"]), answers["method_b"].map(info["quality"])
    sub_a, sub_b = answers["method_a"].map(info["subsampling"]), answers["method_b"].map(info["subsampling"])
    higher_won = np.where(
        q_a > q_b, answers["a_wins"], 1.0 - answers["a_wins"]
    )  # 1 when the higher quality won
    same = (fam_a == fam_b) & (sub_a == sub_b) & (q_a != q_b)
    assert same.sum() > 1000
    assert higher_won[same].mean() > 0.7
    for family in methods["family"].unique():  # per family, higher quality wins more often than not
        f = (fam_a == family) & (fam_b == family) & (q_a != q_b)
        assert higher_won[f].mean() > 0.6, family
