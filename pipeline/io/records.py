"""The typed records that pass between stages, each defined once.

- :class:`DistortedImage`: one distorted image of a group, as the manifest (or a planner: regress, clic) names it;
- :class:`ReferenceGroup`: a reference and its distorted images, with the explicit pairs to score (if any); the
  unit of work and of progress (its ``key`` names its output files);
- :class:`ErrorRow`: one row of the ``errors`` table: the stage, what failed (reference, image, URI) and why.

Records are plain dataclasses with ``to_dict``/``from_dict`` for the one place they cross a process boundary as
data (Ray Data rows carry the group as typed columns; see :mod:`pipeline.scoring.stages`). Messages and URIs are
made safe where the record is built (:meth:`ErrorRow.make`): credentials redacted, URIs shown without them.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.io import storage


def group_key(ref_id: str) -> str:
    """A stable, filesystem-safe name for a reference group's output files."""
    return "g-" + hashlib.sha1(ref_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (``\\x00``, ``\\n``): one safe line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass
class DistortedImage:
    dist_id: str
    dist_uri: str
    codec: str | None = None
    codec_version: str | None = None
    setting: str | None = None
    bytes: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # carried manifest columns (keys vary per manifest)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DistortedImage:
        return cls(**{k: d.get(k) for k in ("dist_id", "dist_uri", "codec", "codec_version", "setting", "bytes")},
                   extras=dict(d.get("extras") or {}))  # fmt: skip


@dataclass
class ReferenceGroup:
    ref_id: str
    ref_uri: str
    dists: list[DistortedImage]
    pairs: list[list[str]] | None = None  # explicit [a_id, b_id] pairs to score instead of a pairing strategy
    key: str = ""

    def __post_init__(self):
        if not self.key:
            self.key = group_key(self.ref_id)

    def to_dict(self) -> dict:
        return {"ref_id": self.ref_id, "ref_uri": self.ref_uri, "key": self.key,
                "dists": [d.to_dict() for d in self.dists], "pairs": self.pairs}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> ReferenceGroup:
        return cls(ref_id=d["ref_id"], ref_uri=d["ref_uri"], key=d.get("key") or "",
                   dists=[DistortedImage.from_dict(x) for x in d["dists"]], pairs=d.get("pairs"))  # fmt: skip

    @classmethod
    def of(cls, group: ReferenceGroup | dict) -> ReferenceGroup:
        """``group`` as a record: a record is returned as is, a dict of the same shape is converted."""
        return group if isinstance(group, ReferenceGroup) else cls.from_dict(group)


@dataclass
class ErrorRow:
    stage: str
    ref_id: str | None
    dist_id: str | None
    uri: str | None
    error: str
    message: str

    @classmethod
    def make(cls, stage: str, code: str, message: str, *, ref_id=None, dist_id=None, uri=None) -> ErrorRow:
        """An error row with the URI shown without credentials and the message redacted, both on one line
        (control characters such as a NUL byte or a newline written as escapes)."""
        return cls(
            stage=stage,
            ref_id=None if ref_id is None else str(ref_id),
            dist_id=None if dist_id is None else str(dist_id),
            uri=None if uri is None else printable(storage.display(str(uri))),
            error=code,
            message=printable(storage.redact(str(message))),
        )

    def to_dict(self, run_id: str | None = None) -> dict:
        d = asdict(self)
        return d if run_id is None else {"run_id": run_id, **d}

    @classmethod
    def from_dict(cls, d: dict) -> ErrorRow:
        return cls(**{k: d.get(k) for k in ("stage", "ref_id", "dist_id", "uri", "error", "message")})
