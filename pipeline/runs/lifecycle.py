"""The life of a run in its output folder, the same for evaluate, regress, clic, sweep and train.

A run is identified by a fingerprint of what makes its outputs comparable (its inputs, the model, the pairing...:
the caller's ``identity``). :meth:`Run.open` reads the output's run record (``run.json``; ``train.json`` for
training) and

- reuses its run id when it holds the same fingerprint (a resumed run: finished units are skipped, see
  :meth:`Run.finished`), keeping its ``started_at`` and its last counts;
- refuses the folder (:class:`OutputConflict`) when it holds another fingerprint, or with ``on_other="replace"``
  starts a new run there (a sweep, whose outputs are reused per file, may be rerun with other inputs);
- writes the record at once with status ``running``: run id, kind, fingerprint, the configuration, the command
  line without credentials, library versions and the code's commit.

Starting is atomic: a new output's record is created exclusively (a local file linked into place only if none is
there; on S3 a conditional PUT, ``If-None-Match: *``), so of two identical commands started at once one creates
the run and the other adopts its run id, after the same fingerprint check; every row then carries one run id.

:meth:`Run.finish` writes the record again (``finished`` or ``incomplete``, the counts, ``finished_at``, any fields
the command adds at the end) and appends it to the runs registry (:mod:`pipeline.runs.registry`) when the run was
opened with one.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Literal

from pipeline.io import storage
from pipeline.io.jsonable import fingerprint, jsonable
from pipeline.runs import registry as runs_registry
from pipeline.runs.provenance import git_commit, new_run_id, utc_now, versions

RUN_FILE = "run.json"
RUNNING, FINISHED, INCOMPLETE = "running", "finished", "incomplete"


class OutputConflict(ValueError):
    """The output folder holds results of a different configuration."""


def read_record(output: str, file: str = RUN_FILE) -> dict | None:
    """The run record ``<output>/<file>``, or None when there is none."""
    try:
        return json.loads(storage.read_text(storage.join(output, file)))
    except FileNotFoundError:
        return None


def _record_text(record: dict) -> str:
    return json.dumps(jsonable(record), indent=2, sort_keys=True)


def write_record(output: str, record: dict, file: str = RUN_FILE) -> None:
    """Write the run record ``<output>/<file>`` (sorted keys, strict JSON: non-finite numbers as null)."""
    storage.write_text(storage.join(output, file), _record_text(record))


def create_record(output: str, record: dict, file: str = RUN_FILE) -> bool:
    """Write the run record only if there is none yet; True when this call created it.

    Local files: written whole to a temporary name, then hard-linked to the record's name, which fails when that
    name exists. Object stores: an exclusive create (``x`` mode: S3's conditional PUT). A file system with neither
    gets a plain write followed by a read-back, and the record read back decides.
    """
    uri = storage.join(output, file)
    data = _record_text(record).encode("utf-8")
    fs, path = storage.filesystem(uri)
    if storage.is_local(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    try:
        with fs.open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):  # no exclusive create here: write, then see whose record stayed
        storage.write_bytes(uri, data)
        stored = read_record(output, file)
        return stored is not None and stored.get("run_id") == record.get("run_id")
    return True


def config_record(config: dict) -> dict:
    """A configuration as a run records it: strings (URIs) shown without credentials."""
    return {k: (storage.display(v) if isinstance(v, str) else v) for k, v in config.items()}


def finished_units(output: str, folder: str, suffix: str = ".parquet") -> set[str]:
    """Names (without ``suffix``) of the files under ``<output>/<folder>/`` and its ``_parts/``: the units a run
    has finished. (Scoring runs, whose finished parts are compacted away, ask
    :func:`pipeline.scoring.results.finished_groups` instead.)"""
    base = storage.join(output, folder)
    names = storage.listdir(base, suffix) + storage.listdir(storage.join(base, "_parts"), suffix)
    return {n.rsplit("/", 1)[-1].removesuffix(suffix) for n in names}


class Run:
    """One run's record in its output folder; see the module docstring."""

    def __init__(
        self,
        output: str,
        record: dict,
        *,
        previous: dict | None = None,
        file: str = RUN_FILE,
        registry: str | Literal[False] | None = False,
    ):
        self.output = output
        self.record = record
        self.previous = previous
        self.file = file
        self.registry = registry

    @classmethod
    def open(
        cls,
        output: str,
        *,
        kind: str,
        identity: dict,
        config: dict | None = None,
        command: str = "",
        fields: dict | None = None,
        file: str = RUN_FILE,
        prefix: str | None = None,
        on_other: Literal["refuse", "replace"] = "refuse",
        status: str = RUNNING,
        registry: str | Literal[False] | None = False,
    ) -> Run:
        """Start (or resume) a run of ``kind`` in ``output`` and write its record with ``status``.

        ``identity`` is what the fingerprint is made of; ``config`` is recorded with URIs shown without
        credentials; ``fields`` are added to the record as given (and override the standard keys). ``prefix``
        starts a new run id (default: ``kind``). ``registry`` is the registry root the finished run is appended
        to: ``None`` means ``$PRFEVAL_REGISTRY`` if set, ``False`` never records.
        """
        fp = fingerprint(identity)

        def make(before: dict) -> dict:
            return {
                "run_id": before.get("run_id") or new_run_id(prefix or kind),
                "kind": kind,
                "fingerprint": fp,
                "status": status,
                "started_at": before.get("started_at") or utc_now(),
                "finished_at": None,
                "command": storage.redact(command),
                "config": config_record(config or {}),
                "versions": versions(),
                "git_commit": git_commit(),
                "counts": before.get("counts", {}),
                **(fields or {}),
            }

        previous = read_record(output, file)
        if previous is None:
            record = make({})
            if create_record(output, record, file):
                return cls(output, record, previous=None, file=file, registry=registry)
            previous = read_record(output, file)  # another start created it first: adopt its run
        if previous is not None and previous.get("fingerprint") != fp:
            if on_other == "refuse":
                raise OutputConflict(
                    f"{storage.display(output)} holds results of another configuration "
                    f"(run {previous.get('run_id')}); write to a new --output"
                )
            previous = None
        run = cls(output, make(previous or {}), previous=previous, file=file, registry=registry)
        run.write()
        return run

    @classmethod
    def load(cls, output: str, *, file: str = RUN_FILE, registry: str | Literal[False] | None = False) -> Run:
        """The run recorded in ``output`` (to finish a resumed run); :class:`FileNotFoundError` when none."""
        record = read_record(output, file)
        if record is None:
            raise FileNotFoundError(storage.join(output, file))
        return cls(output, record, previous=dict(record), file=file, registry=registry)

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]

    def finished(self, folder: str, suffix: str = ".parquet") -> set[str]:
        """The units finished in this output (file names under ``folder``); empty for a new run's folder."""
        return finished_units(self.output, folder, suffix)

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` into the record in memory; written by :meth:`write` or :meth:`finish`."""
        self.record.update(fields)

    def refresh(self) -> dict:
        """Read the record again (for runs whose record is also written by their workers, e.g. training)."""
        self.record = read_record(self.output, self.file) or self.record
        return self.record

    def write(self) -> None:
        write_record(self.output, self.record, self.file)

    def finish(
        self, *, counts: dict | None = None, status: str | None = None, fields: dict | None = None
    ) -> dict:
        """Write the finished record and append it to the registry (when opened with one); returns the record.

        ``counts`` replaces the record's counts when given; ``status`` defaults to the one staged with
        :meth:`update` if it is ``finished``/``incomplete``, else ``finished``; ``fields`` are merged in last.
        """
        if counts is not None:
            self.record["counts"] = counts
        staged = self.record.get("status")
        self.record["status"] = status or (staged if staged in (FINISHED, INCOMPLETE) else FINISHED)
        self.record["finished_at"] = utc_now()
        self.record.update(fields or {})
        self.write()
        if self.registry is not False:
            runs_registry.record(self.registry, self.record, results_uri=self.output)
        return self.record


__all__ = [
    "FINISHED",
    "INCOMPLETE",
    "RUNNING",
    "RUN_FILE",
    "OutputConflict",
    "Run",
    "config_record",
    "create_record",
    "finished_units",
    "read_record",
    "write_record",
]
