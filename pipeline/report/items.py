"""What a leaderboard ranks: codecs, or codec settings, labelled the same way in every table, plot and file.

A codec present in one version is labelled by its name (``jpeg``); a codec present in several versions by name
and version (``jpeg 9e``, ``jpeg 8d``), so different builds are never pooled silently. With ``by="setting"`` the
setting is appended (``jpeg q=75``).
"""

from __future__ import annotations

import pandas as pd

BY_CHOICES = ("codec", "setting")


def _text(values: pd.Series) -> pd.Series:
    return values.astype("object").where(values.notna(), "").astype(str)


def multi_version_codecs(images: pd.DataFrame) -> set[str]:
    """Codecs that appear with more than one ``codec_version``."""
    if "codec_version" not in images.columns or images.empty:
        return set()
    versions = images.assign(v=_text(images["codec_version"])).groupby("codec")["v"].nunique()
    return set(versions[versions > 1].index)


def curve_labels(frame: pd.DataFrame, multi: set[str], prefix: str = "") -> pd.Series:
    """The codec label of each row (``codec`` or ``codec version``); ``prefix`` selects ``a_``/``b_`` columns."""
    codec = _text(frame[f"{prefix}codec"])
    version_col = f"{prefix}codec_version"
    if not multi or version_col not in frame.columns:
        return codec
    version = _text(frame[version_col])
    return codec.where(~codec.isin(multi), codec + " " + version)


def item_labels(frame: pd.DataFrame, multi: set[str], by: str, prefix: str = "") -> pd.Series:
    """The leaderboard item of each row: the codec label, plus the setting when ``by == "setting"``."""
    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {BY_CHOICES}, got {by!r}")
    label = curve_labels(frame, multi, prefix)
    if by == "setting":
        setting = _text(frame[f"{prefix}setting"])
        label = (label + " " + setting).str.strip()
    return label
