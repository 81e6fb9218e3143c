"""The training loop each Ray Train worker runs (data-parallel: DDP over gloo on CPUs, NCCL on GPUs).

Per epoch, every worker trains on its equal share of the augmented samples (:mod:`pipeline.training.data`); DDP
averages the gradients. Then the workers score the held-out references between them (each a share of the
reference groups, the evaluate pipeline's tiling and patch-mean logits, :mod:`pipeline.training.validate`), rank 0
gathers the logits, computes the metrics, writes the epoch's checkpoint, the optimizer state and ``train.json``
(:mod:`pipeline.training.state`), and every worker reports the metrics to Ray Train.

A worker that starts while ``train.json`` records finished epochs continues after the last one: that is how
``--resume`` works, and how a run restarted by Ray Train after a worker failure picks up where it stopped.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.io import storage, tables
from pipeline.runs.provenance import utc_now, versions
from pipeline.training import data, metrics, state, validate
from pipeline.training.config import TrainConfig, learning_rate


class PairLogits(nn.Module):
    """The training view of PRFNet: the logit of P(A closer) for a batch of triplets.

    O, A and B go through the backbone as one batch (as :meth:`model.PRFNet.forward` does in training mode, so
    batch-norm statistics are shared by the three images of a triplet); the loss takes the logits directly,
    which keeps binary cross-entropy exact where the sigmoid saturates.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, o: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feats = self.net.encode(torch.cat([o, a, b]))
        f_o, f_a, f_b = (list(t) for t in zip(*(f.chunk(3) for f in feats), strict=True))
        return self.net.compare(f_o, f_a, f_b)


def _say(message: str) -> None:
    """One progress line on the worker's stdout, which Ray forwards to the driver's console.

    Written directly rather than printed: Ray Train patches ``print`` to also log each line, which would show it
    twice."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _mean_across_workers(total: float, count: int, device) -> float:
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    if (dist := _dist()) is not None:
        dist.all_reduce(t)
    return float(t[0] / max(t[1], 1.0))


def _gather(obj):
    if (dist := _dist()) is None:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _sync_buffers(net: nn.Module) -> None:
    """Give every worker rank 0's batch-norm statistics, so each scores validation with the saved weights."""
    if (dist := _dist()) is not None:
        for buf in net.buffers():
            dist.broadcast(buf, src=0)


def build_model(cfg: TrainConfig) -> nn.Module:
    from model import create_model

    torch.manual_seed(cfg.seed)
    if cfg.init_checkpoint:
        from model import load_checkpoint

        net = create_model(cfg.model)
        net.load_state_dict(load_checkpoint(cfg.init_checkpoint, expected_model=cfg.model).model.state_dict())
        return net
    if cfg.pretrained_file:
        return create_model(cfg.model, pretrained_file=cfg.pretrained_file)
    if cfg.pretrained:
        return create_model(cfg.model, pretrained=True)
    return create_model(cfg.model)


def checkpoint_metadata(
    cfg: TrainConfig, epoch: int, val: dict | None, train_loss: float, run_id: str
) -> dict:
    """What every checkpoint of the run says about itself."""
    return {
        "trained_with": "prfeval train",
        "run_id": run_id,
        "command": storage.redact(cfg.command),
        "created_at": utc_now(),
        "epoch": epoch,
        "epochs_planned": cfg.epochs,
        "seed": cfg.seed,
        "data": cfg.data,
        "training": cfg.hyperparameters(),
        "train_loss": train_loss,
        "validation": val,
        "versions": versions(),
    }


def train_loop_per_worker(config: dict) -> dict | None:
    """Ray Train's ``train_loop_per_worker``: ``config`` is :meth:`TrainConfig.to_dict`; rank 0 returns a summary."""
    import ray.train
    import ray.train.torch

    from model import load_checkpoint

    cfg = TrainConfig(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    say = _say if rank == 0 else (lambda message: None)

    table = tables.read_table(storage.join(cfg.output, state.TRIPLETS_FILE)).to_pandas()
    train_rows = table[table["split"] == "train"].to_dict("records")
    val = table[table["split"] == "val"].reset_index(drop=True)
    run = state.read_state(cfg.output) or {}
    done = int(run.get("epochs_done", 0))

    net = build_model(cfg)
    crop = int(cfg.crop or net.meta["patch_size"])
    if done:
        net.load_state_dict(
            load_checkpoint(run["latest"]["checkpoint"], expected_model=cfg.model).model.state_dict()
        )
    module = ray.train.torch.prepare_model(PairLogits(net))
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if done:
        state.load_optimizer(optimizer, run["latest"]["optimizer"], device)
        say(f"resuming after epoch {done} from {storage.display(run['latest']['checkpoint'])}")

    samples = data.TripletSamples(train_rows, crop=crop, seed=cfg.seed, cache_bytes=cfg.cache_mb << 20)
    weights = np.array([float(r.get("weight", 1.0)) for r in train_rows])
    mean_weight = float(weights.mean()) if len(weights) and weights.mean() > 0 else 1.0
    per_epoch = data.steps_per_epoch(
        len(train_rows), crops_per_triplet=cfg.crops_per_triplet, world=world, batch_size=cfg.batch_size
    )
    total_steps = per_epoch * cfg.epochs
    step = per_epoch * done
    summary = None
    for epoch in range(done + 1, cfg.epochs + 1):
        module.train()
        indices = data.epoch_indices(
            len(train_rows),
            crops_per_triplet=cfg.crops_per_triplet,
            epoch=epoch,
            seed=cfg.seed,
            rank=rank,
            world=world,
        )
        batches = data.loader(
            samples, indices, epoch=epoch, batch_size=cfg.batch_size, workers=cfg.loader_workers
        )
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        for i, (o, a, b, y, w) in enumerate(batches, start=1):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step, total_steps)
            logits = module(o.to(device), a.to(device), b.to(device))
            target = y.to(device) * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2
            per_triplet = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            loss = (per_triplet * w.to(device)).mean() / mean_weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
            if i % cfg.log_every == 0 or i == per_epoch:
                rate = seen * world / max(time.perf_counter() - started, 1e-9)
                eta = (per_epoch - i) * cfg.batch_size * world / max(rate, 1e-9)
                say(
                    f"epoch {epoch}/{cfg.epochs} step {i}/{per_epoch}  loss {loss_sum / seen:.4f}  "
                    f"lr {optimizer.param_groups[0]['lr']:.2e}  {rate:.1f} triplets/s  epoch eta {eta:.0f} s"
                )
        train_loss = _mean_across_workers(loss_sum, seen, device)
        train_seconds = time.perf_counter() - started

        val_metrics = None
        frame = None
        if len(val) and (epoch % max(1, cfg.val_every) == 0 or epoch == cfg.epochs):
            started_val = time.perf_counter()
            _sync_buffers(net)
            mine = validate.score_frame(net, val, batch_size=cfg.val_batch_size, shard=(rank, world))
            logits = {}
            for part in _gather(mine):
                logits.update(part)
            frame = val.assign(logit=[logits.get(i, np.nan) for i in range(len(val))])
            val_metrics = metrics.summarize(frame, buckets=cfg.bpp_buckets)
            unreadable = frame["logit"].isna()  # triplets whose images could not be read
            val_metrics["unscored"] = int(unreadable.sum())
            val_metrics["seconds"] = round(time.perf_counter() - started_val, 2)
        if rank == 0:
            summary = _save_epoch(cfg, net, optimizer, run, epoch, train_loss, train_seconds, val_metrics)
            if frame is not None:  # the held-out logits, for figures beyond the summary (e.g. per answer)
                keep = ["ref_id", "a_uri", "b_uri", "label", "votes", "weight", "family", "logit"]
                frame = frame[[c for c in keep if c in frame.columns]]
                tables.write_parquet(
                    state.validation_file(cfg.output, epoch),
                    pa.Table.from_pandas(frame, preserve_index=False),
                )
        report = {"epoch": epoch, "train_loss": train_loss}
        if val_metrics:
            report |= {f"val_{k}": val_metrics[k] for k in ("accuracy", "two_afc", "bce")}
        ray.train.report(report)
    return summary


def _save_epoch(
    cfg: TrainConfig,
    net,
    optimizer,
    run: dict,
    epoch: int,
    train_loss: float,
    seconds: float,
    val_metrics: dict | None,
) -> dict:
    """Rank 0: the epoch's checkpoint, the optimizer state, the final file, then ``train.json`` (last)."""
    from model import save_checkpoint

    meta = checkpoint_metadata(cfg, epoch, val_metrics, train_loss, run.get("run_id", ""))
    ck_uri = state.epoch_checkpoint(cfg.output, epoch)
    sha = save_checkpoint(net, ck_uri, meta)
    opt_uri = state.optimizer_file(cfg.output, epoch)
    state.save_optimizer(optimizer, opt_uri)
    final_uri = state.final_checkpoint(cfg.output, cfg.model)
    save_checkpoint(net, final_uri, meta)
    entry = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_seconds": round(seconds, 2),
        "validation": val_metrics,
        "checkpoint": storage.display(ck_uri),
        "sha256": sha,
        "finished_at": utc_now(),
    }
    run["history"] = [h for h in run.get("history", []) if h["epoch"] < epoch] + [entry]
    run["epochs_done"] = epoch
    run["epochs_planned"] = cfg.epochs
    run["latest"] = {"checkpoint": ck_uri, "optimizer": opt_uri, "sha256": sha, "final": final_uri}
    run["status"] = "finished" if epoch == cfg.epochs else "running"
    run["updated_at"] = utc_now()
    state.write_state(cfg.output, run)
    return {
        "epoch": epoch,
        "checkpoint": final_uri,
        "sha256": sha,
        "validation": val_metrics,
        "train_loss": train_loss,
    }
