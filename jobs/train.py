"""`prfeval train`: train PRFNet on 2AFC triplets with Ray Train (data-parallel across CPUs, GPUs and nodes)."""

from __future__ import annotations

import argparse
import shlex
import sys

from jobs.common import EXIT_OK, EXIT_USAGE, ArgumentParser, UsageError, command
from pipeline.io import storage
from pipeline.training.metrics import DEFAULT_BUCKETS

EPILOG = """\
triplet inputs:
  a table (CSV with a header, or Parquet): ref_uri,a_uri,b_uri,label  (label = P(A closer), soft allowed;
      optional ref_id, family, a_bpp, b_bpp, split)
  a CLIC CSV: OriginalFile,FileA,FileB,T (T=0 when A is closer), names relative to --images
  synthetic:samples[:names][?sides=256,384,512&seed=0]: known-order pairs built from the bundled photos
      (codec settings and blur/noise/quantisation strengths), generated under OUTPUT/synthetic/

outputs under --output: train.json (config, split, per-epoch metrics), triplets.parquet,
  checkpoints/epoch-NNNN.safetensors (+ .optim.safetensors), MODEL.safetensors (the latest epoch)

The shipped prfnet-tiny checkpoint is reproduced by (docs/model-card-prfnet-tiny.md):
  prfeval train --triplets synthetic:samples --model prfnet-tiny --holdout chelsea,rocket --epochs 4 \\
      --batch-size 16 --lr 2e-3 --label-smoothing 0.2 --workers 2 --output prfnet-tiny-train
"""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="prfeval train",
        description="Train PRFNet on 2AFC triplets with Ray Train; a checkpoint and held-out validation "
        "accuracy every epoch; --resume continues a run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--triplets", required=True, help="triplet table, CLIC CSV or synthetic:samples (see below)"
    )
    p.add_argument("--output", required=True, help="run folder URI (local path or s3://...)")
    p.add_argument("--model", default="prfnet", help="registered model name (default: prfnet)")
    p.add_argument("--images", help="folder that relative image names resolve against (default: the table's)")
    p.add_argument("--originals", help="CLIC: folder of the original images (default: --images)")
    p.add_argument(
        "--workers", type=int, default=1, help="Ray Train workers, one model replica each (default 1)"
    )
    p.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL); default: CPUs (gloo)")
    p.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1); torch threads"
    )
    p.add_argument(
        "--epochs", type=int, default=10, help="epochs in total, counting resumed ones (default 10)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="triplets per worker and step (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        help="train on l(1-e)+e/2 instead of label l (default 0; bounds the logits of hard labels)",
    )
    p.add_argument("--crop", type=int, help="random crop side in pixels (default: the model's patch size)")
    p.add_argument(
        "--crops-per-triplet", type=int, default=1, help="random crops of each triplet per epoch (default 1)"
    )
    p.add_argument(
        "--holdout",
        help="comma-separated ref_ids to hold out for validation (default: --val-fraction of them)",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="fraction of references held out (default 0.1)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the model, the split and the crops (default 0)"
    )
    p.add_argument(
        "--pretrained", action="store_true", help="ImageNet backbone weights from timm (needs network access)"
    )
    p.add_argument(
        "--pretrained-file", help="ImageNet backbone weights from a local timm weight file instead"
    )
    p.add_argument(
        "--init-checkpoint",
        help="start from this prfeval checkpoint of the same model (e.g. fine-tune the packaged one)",
    )
    p.add_argument(
        "--val-every",
        type=int,
        default=1,
        help="validate after every N-th epoch and after the last (default 1)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --output after its last epoch")
    p.add_argument(
        "--loader-workers", type=int, default=0, help="image-decoding processes per worker (default 0)"
    )
    p.add_argument(
        "--cache-mb", type=int, default=1024, help="decoded-image cache per worker, MB (default 1024)"
    )
    p.add_argument("--val-batch-size", type=int, help="patches per model call in validation")
    p.add_argument(
        "--bpp-buckets", default=DEFAULT_BUCKETS, help=f"validation bpp buckets (default {DEFAULT_BUCKETS})"
    )
    p.add_argument(
        "--max-failures", type=int, default=0, help="worker-group restarts after failures (default 0)"
    )
    p.add_argument(
        "--ray-storage",
        help="Ray Train's own run folder (default: a local temporary folder; checkpoints go to --output, so a "
        "local folder works on a multi-node cluster too)",
    )
    p.add_argument("--log-every", type=int, default=20, help="steps between progress lines (default 20)")
    return p


@command
def main(argv: list[str] | None = None) -> int:
    from pipeline.training.config import TrainConfig
    from pipeline.training.run import TrainFailed, TrainInputError, run_training

    args = build_parser().parse_args(argv)
    positive = {
        "--workers": args.workers,
        "--epochs": args.epochs,
        "--batch-size": args.batch_size,
        "--crops-per-triplet": args.crops_per_triplet,
        "--log-every": args.log_every,
        "--val-every": args.val_every,
    }
    for flag, value in positive.items():
        if value < 1:
            raise UsageError(f"{flag} must be at least 1")
    if not 0 <= args.label_smoothing < 1:
        raise UsageError("--label-smoothing must be in [0, 1)")
    if args.lr <= 0 or args.cpus_per_worker <= 0 or args.loader_workers < 0 or args.max_failures < 0:
        raise UsageError("--lr and --cpus-per-worker must be positive; --loader-workers, --max-failures >= 0")
    cfg = TrainConfig(
        triplets=args.triplets,
        output=args.output,
        model=args.model,
        images=args.images,
        originals=args.originals,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        label_smoothing=args.label_smoothing,
        crop=args.crop,
        crops_per_triplet=args.crops_per_triplet,
        val_fraction=args.val_fraction,
        holdout=[h.strip() for h in args.holdout.split(",") if h.strip()] if args.holdout else None,
        seed=args.seed,
        pretrained=args.pretrained,
        pretrained_file=args.pretrained_file,
        init_checkpoint=args.init_checkpoint,
        val_every=args.val_every,
        workers=args.workers,
        use_gpu=args.use_gpu,
        cpus_per_worker=args.cpus_per_worker,
        loader_workers=args.loader_workers,
        cache_mb=args.cache_mb,
        val_batch_size=args.val_batch_size,
        bpp_buckets=args.bpp_buckets,
        max_failures=args.max_failures,
        ray_storage=args.ray_storage,
        log_every=args.log_every,
        command=shlex.join(["prfeval", "train", *(argv if argv is not None else sys.argv[2:])]),
    )
    try:
        summary = run_training(cfg, resume=args.resume)
    except TrainInputError as e:
        raise UsageError(str(e)) from None
    except TrainFailed as e:
        print(f"prfeval train: training failed: {e}", file=sys.stderr)
        print(
            f"finished epochs are saved in {storage.display(args.output)}; fix the cause and rerun with --resume",
            file=sys.stderr,
        )
        return EXIT_USAGE
    val = summary.validation
    acc = "n/a" if not val or val.get("accuracy") is None else f"{val['accuracy']:.4f}"
    print(
        f"run {summary.run_id}: {summary.epochs_done} epoch(s) done ({summary.epochs_run} this time) in "
        f"{summary.seconds:.0f} s; held-out accuracy {acc}"
    )
    if summary.checkpoint:
        print(f"checkpoint: {summary.checkpoint}  sha256 {summary.sha256}")
    print(f"run folder: {storage.display(summary.output)}  (train.json, checkpoints/)")
    return EXIT_OK
