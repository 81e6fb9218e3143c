"""The Ray Data stages of a scoring run, as thin adapters around plain cores.

- :func:`load_stage` (CPU tasks) wraps :func:`pipeline.scoring.load.load_group`;
- :class:`ScoreActor` (actor pool, one model replica each) wraps :class:`pipeline.scoring.scorer.PairScorer`;
- :func:`write_stage` (CPU tasks) wraps :func:`pipeline.scoring.results.group_tables` and the group's writes.

They run inside Ray workers; :mod:`pipeline.scoring.driver` wires them into one dataset.
"""

from __future__ import annotations

import json
import resource

import numpy as np

from pipeline.io import storage
from pipeline.scoring import pairing, results


def load_stage(row: dict, *, patch: int, min_size: int, max_pixels, allow_roots) -> dict:
    """Ray ``map`` adapter of :func:`pipeline.scoring.load.load_group`: decoded patches travel as raw bytes."""
    from pipeline.scoring.load import LoadedGroup, load_group

    group = json.loads(row["group"])
    try:
        loaded = load_group(
            group, patch=patch, min_size=min_size, max_pixels=max_pixels, allow_roots=allow_roots
        )
    except Exception as e:  # an unexpected failure loses this group only, with the reason recorded
        loaded = LoadedGroup(ref_id=group["ref_id"], ref_uri=storage.display(group["ref_uri"]), key=group["key"],
                             dists=[])  # fmt: skip
        loaded.errors = [
            {"stage": "load", "ref_id": group["ref_id"], "dist_id": d["dist_id"],
             "uri": storage.display(d["dist_uri"]), "error": "internal",
             "message": storage.redact(f"{type(e).__name__}: {e}")}
            for d in group["dists"]
        ]  # fmt: skip
    shape = [] if loaded.patches is None else list(loaded.patches.shape)
    pixels = b"" if loaded.patches is None else loaded.patches.tobytes()
    return {"key": loaded.key, "meta": loaded.meta_json(), "shape": json.dumps(shape), "pixels": pixels}


class ScoreActor:
    """Ray actor adapter of :class:`pipeline.scoring.scorer.PairScorer`: one model replica, one group per call."""

    def __init__(self, *, model: str, checkpoint: str | None, device: str, precision: str, batch_size, threads,
                 pairs: str, match_tolerance: float):  # fmt: skip
        from pipeline.scoring.scorer import PairScorer

        self.scorer = PairScorer.load(
            model, checkpoint, device=device, precision=precision, batch_size=batch_size, threads=threads
        )
        self.strategy = pairs
        self.tolerance = match_tolerance

    def __call__(self, batch: dict) -> dict:
        out_keys, out_meta = [], []
        for key, meta_s, shape_s, pixels in zip(batch["key"], batch["meta"], batch["shape"], batch["pixels"],
                                                strict=True):  # fmt: skip
            meta = json.loads(meta_s)
            shape = json.loads(shape_s)
            meta.update(model=self.scorer.model_name, checkpoint_sha256=self.scorer.checkpoint_sha256,
                        device=str(self.scorer.device), pairs=[], logits=[], n_patches=0, failed=False)  # fmt: skip
            if shape and meta["dists"]:
                if meta.get("pairs_by_id") is not None:
                    pair_list = pairing.pairs_by_id(
                        [d["dist_id"] for d in meta["dists"]], meta["pairs_by_id"]
                    )
                else:
                    items = [pairing.Item(codec=d["codec"], bpp=d["bpp"]) for d in meta["dists"]]
                    pair_list = pairing.pairs(items, self.strategy, tolerance=self.tolerance)
                try:
                    patches = np.frombuffer(bytearray(pixels), dtype=np.uint8).reshape(shape)
                    logits = self.scorer.score(patches, pair_list)
                    meta.update(pairs=pair_list, logits=[float(v) for v in logits], n_patches=int(shape[1]))
                except Exception as e:  # e.g. out of device memory: this group fails, is retried on rerun
                    meta["failed"] = True
                    meta["errors"] = meta["errors"] + [
                        {"stage": "score", "ref_id": meta["ref_id"], "dist_id": None, "uri": meta["ref_uri"],
                         "error": "scoring_failed", "message": storage.redact(f"{type(e).__name__}: {e}")}
                    ]  # fmt: skip
            meta["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out_keys.append(key)
            out_meta.append(json.dumps(meta))
        return {"key": np.array(out_keys, dtype=object), "meta": np.array(out_meta, dtype=object)}


def write_stage(row: dict, *, output: str, run_id: str, codec_table) -> dict:
    """Ray ``map`` adapter of :func:`pipeline.scoring.results.write_group`; returns the group's counts."""
    meta = json.loads(row["meta"])
    pairs = [tuple(p) for p in meta["pairs"]]
    tables = results.group_tables(
        meta,
        pairs,
        np.asarray(meta["logits"], dtype=np.float64),
        run_id=run_id,
        model=meta["model"],
        checkpoint_sha256=meta["checkpoint_sha256"],
        n_patches=meta["n_patches"],
        codec_table=codec_table,
    )
    if meta["failed"]:
        tables = {"images": tables["images"].slice(0, 0), "pairs": tables["pairs"].slice(0, 0),
                  "errors": tables["errors"]}  # fmt: skip
        results.write_errors(output, row["key"], meta["errors"], run_id)
    else:
        results.write_group(output, row["key"], tables)
    return {
        "key": row["key"],
        "images": 0 if meta["failed"] else tables["images"].num_rows,
        "pairs": 0 if meta["failed"] else tables["pairs"].num_rows,
        "errors": tables["errors"].num_rows,
        "failed": bool(meta["failed"]),
        "checkpoint_sha256": meta["checkpoint_sha256"],
        "device": meta["device"],
        "peak_rss_mb": meta["peak_rss_mb"],
    }
