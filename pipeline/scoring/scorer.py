"""Scoring a reference group with PRFNet: encode each image once, compare every requested pair from the cache.

:class:`PairScorer` is a plain class (no Ray): it loads one model replica in ``__init__`` and scores groups of
already decoded, already tiled images. The Ray actor of :mod:`pipeline.scoring.stages` is a thin adapter around
it; the pairs are chosen before (:mod:`pipeline.scoring.load`), so scoring is encoding and comparing only.

Per group, with K patches per image on a shared grid:

1. the reference and every distorted image are encoded patch by patch, in batches of ``batch_size`` patches;
2. each pair (A, B) is compared patch by patch (O, A, B share patch ``k``), from the cached features;
3. the pair logit is the mean of its K patch logits (so ``p_a = sigmoid(mean logit)``; the model is antisymmetric,
   so the mean is too: swapping A and B negates the logit exactly).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_BATCH = {"cpu": 16, "cuda": 128}


def untrained_sha256(model) -> str:
    """A stable fingerprint of randomly initialised weights (used when no checkpoint is given)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(save(state)).hexdigest()


def build_model(name: str, checkpoint: str | None, *, device):
    """The model replica and its checkpoint's sha256: from ``checkpoint`` if given, else the packaged default."""
    import torch

    from model import create_model, load_checkpoint
    from model.bundled import default_checkpoint

    uri = checkpoint or default_checkpoint(name)
    if uri:
        ck = load_checkpoint(uri, expected_model=name, device="cpu")
        model, sha = ck.model, ck.sha256
    else:
        log.warning("no checkpoint for %s: using untrained weights (seed 0); scores are not meaningful", name)
        torch.manual_seed(0)
        model = create_model(name)
        sha = untrained_sha256(model)
    return model.eval().to(device), sha


def _tensor(array: np.ndarray):
    """A tensor sharing ``array``'s memory, also when it is read-only (a zero-copy view of a Ray Data column)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class PairScorer:
    """One PRFNet replica that scores reference groups from cached features.

    Build it around a model in memory (``PairScorer(model)``, e.g. while training) or load a replica by name and
    checkpoint URI (:meth:`load`, what the scoring actors do).
    """

    def __init__(
        self,
        model,
        *,
        checkpoint_sha256: str | None = None,
        precision: str = "fp32",
        batch_size: int | None = None,
        device=None,
    ):
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.checkpoint_sha256 = checkpoint_sha256
        self.meta = dict(model.meta)
        self.model_name = str(self.meta.get("name") or getattr(model, "variant", "prfnet"))
        self.patch_size = int(self.meta["patch_size"])
        self.min_size = int(self.meta.get("min_size", 32))
        self.precision = precision
        self.batch_size = int(batch_size or DEFAULT_BATCH.get(self.device.type, 16))

    @classmethod
    def load(
        cls,
        model_name: str,
        checkpoint: str | None = None,
        *,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> PairScorer:
        """A replica of ``model_name`` from ``checkpoint`` (default: the packaged one), on ``device``."""
        import torch

        from model import select_device

        if threads:
            torch.set_num_threads(threads)
        dev = select_device(None if device == "auto" else device)
        model, sha = build_model(model_name, checkpoint, device=dev)
        return cls(model, checkpoint_sha256=sha, precision=precision, batch_size=batch_size, device=dev)

    def _autocast(self):
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def encode(self, patches: np.ndarray) -> list:
        """(M, 3, h, w) uint8 patches -> the model's feature maps for all of them, computed in batches."""
        import torch

        feats: list[list] = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(patches), self.batch_size):
                x = _tensor(patches[start : start + self.batch_size]).to(self.device)
                x = x.float().div_(255.0)  # a new tensor: the patches themselves are never written
                feats.append(self.model.encode(x))
        return [torch.cat([f[s] for f in feats]) for s in range(len(feats[0]))]

    def score(self, patches: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
        """Pair logits for a group.

        ``patches`` is (1 + N, K, 3, h, w) uint8: the reference first, then the N distorted images. ``pairs`` are
        (i, j) indices into the distorted images (0-based). Returns one logit per pair (mean over patches).
        """
        import torch

        if not pairs:
            return np.zeros(0, dtype=np.float64)
        n_img, k = patches.shape[:2]
        feats = self.encode(patches.reshape(n_img * k, *patches.shape[2:]))
        pair_idx = (
            torch.as_tensor(pairs, dtype=torch.long, device=self.device) + 1
        )  # image index; 0 is reference
        patch_idx = torch.arange(k, device=self.device)
        per_chunk = max(1, self.batch_size // k) if k <= self.batch_size else 1
        logits = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(pairs), per_chunk):
                chunk = pair_idx[start : start + per_chunk]
                io = patch_idx.repeat(len(chunk))
                ia = (chunk[:, 0:1] * k + patch_idx).reshape(-1)
                ib = (chunk[:, 1:2] * k + patch_idx).reshape(-1)
                out = self.model.compare(
                    [f[io] for f in feats], [f[ia] for f in feats], [f[ib] for f in feats]
                )
                logits.append(out.float().reshape(len(chunk), k).mean(dim=1))
        return torch.cat(logits).double().cpu().numpy()
