"""The configuration of a training run: one dataclass, sent whole to every Ray Train worker."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from pipeline.io import storage
from pipeline.io.jsonable import fingerprint
from pipeline.training.metrics import DEFAULT_BUCKETS
from pipeline.training.synthetic import is_synthetic_uri


@dataclass
class TrainConfig:
    """What ``prfeval train`` was asked to do.

    ``batch_size`` is triplets per worker and step (the effective batch is ``batch_size * workers``); ``crop`` is
    the side of the random crops (default: the model's patch size); an epoch visits every training triplet
    ``crops_per_triplet`` times. The learning rate warms up linearly over ``warmup_steps`` then follows a cosine
    to ``lr * min_lr_ratio`` at the last planned epoch. ``label_smoothing`` ``e`` trains on ``l (1 - e) + e / 2``
    instead of the label ``l`` (hard 0/1 labels become ``e / 2`` and ``1 - e / 2``), which bounds the logits the
    model learns for pairs it can tell apart; validation metrics always use the labels as given. Each triplet's
    loss is multiplied by its ``weight`` and divided by the mean weight of the training triplets (all weights 1:
    the plain mean). ``init_checkpoint`` starts from a prfeval checkpoint of the same model (e.g. to fine-tune the
    packaged one) instead of random or ImageNet weights. Validation runs after every ``val_every``-th epoch and
    after the last.
    """

    triplets: str
    output: str
    model: str = "prfnet"
    images: str | None = None
    originals: str | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    label_smoothing: float = 0.0
    crop: int | None = None
    crops_per_triplet: int = 1
    val_fraction: float = 0.1
    holdout: list[str] | None = None
    seed: int = 0
    pretrained: bool = False
    pretrained_file: str | None = None
    init_checkpoint: str | None = None
    val_every: int = 1
    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    loader_workers: int = 0
    cache_mb: int = 1024
    val_batch_size: int | None = None
    bpp_buckets: str = DEFAULT_BUCKETS
    max_failures: int = 0
    ray_storage: str | None = None
    log_every: int = 20
    command: str = ""
    data: dict = field(default_factory=dict)  # filled by the driver: what the triplets are

    # what must not change when a run is resumed (epochs may grow; workers may change with the cluster)
    _FINGERPRINT = (
        "model",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_steps",
        "min_lr_ratio",
        "label_smoothing",
        "crop",
        "crops_per_triplet",
        "seed",
        "pretrained",
        "pretrained_file",
        "init_checkpoint",
    )

    def identity(self, val_refs: list[str]) -> dict:
        """What a resumed run must share with the run it continues: the settings, the triplets, the split."""
        key = {k: getattr(self, k) for k in self._FINGERPRINT}
        if key["init_checkpoint"] is None:  # runs from before the option keep their fingerprint
            del key["init_checkpoint"]
        synthetic = is_synthetic_uri(self.triplets)
        key["triplets"] = self.triplets if synthetic else storage.canonical(self.triplets)
        key["val_refs"] = sorted(val_refs)
        return key

    def fingerprint(self, val_refs: list[str]) -> str:
        return fingerprint(self.identity(val_refs))

    def to_dict(self) -> dict:
        return asdict(self)

    def hyperparameters(self) -> dict:
        """The training settings recorded in checkpoint metadata."""
        keep = (
            "epochs",
            "batch_size",
            "lr",
            "weight_decay",
            "warmup_steps",
            "min_lr_ratio",
            "label_smoothing",
            "crop",
            "crops_per_triplet",
            "seed",
            "pretrained",
            "init_checkpoint",
            "workers",
            "val_fraction",
            "holdout",
        )
        return {k: getattr(self, k) for k in keep} | {
            "optimizer": "AdamW",
            "loss": "binary cross-entropy on logits, weighted by the triplets' weight",
        }


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps`` (at most a tenth of the run), then a cosine to ``lr * min_lr_ratio``."""
    warmup = min(cfg.warmup_steps, max(1, total_steps // 10))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
