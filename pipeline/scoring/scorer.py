"""Scoring a reference group with PRFNet: encode each image once, compare every requested pair from the cache.

:class:`PairScorer` is a plain class (no Ray): it loads one model replica in ``__init__`` and scores groups of
already decoded, already tiled images. The Ray actor of :mod:`pipeline.scoring.stages` is a thin adapter around
it; the pairs are chosen before (:mod:`pipeline.scoring.load`), so scoring is encoding and comparing only.

Per group, with K patches per image on a shared grid:

1. the reference and every distorted image are encoded patch by patch, in batches of ``batch_size`` patches, and
   each batch's feature maps are projected at once by the model's cross subtraction projections
   (``model.project``); only the projections are kept (for ``prfnet`` at 256 px about 1 MiB a patch instead
   of the backbone's 7.5 MiB), so no projection is recomputed per pair;
2. each pair (A, B) is compared patch by patch (O, A, B share patch ``k``) from the cached projections
   (``model.compare_projected``);
3. the pair logit is the mean of its K patch logits (so ``p_a = sigmoid(mean logit)``; the model is antisymmetric,
   so the mean is too: swapping A and B negates the logit exactly).

Batch size: given, or 16 on the CPU; on CUDA it is chosen from free device memory (:func:`batch_size_for_memory`:
a measured per-patch footprint of one probe batch, a safety factor that leaves room for the group's cache and
other replicas on the same GPU). Patches go to a CUDA device from pinned memory, non-blocking.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_BATCH = {"cpu": 16, "cuda": 128}  # cuda: only when free memory cannot be measured
MEMORY_SAFETY = 0.5  # share of the free device memory one encode batch may take
MAX_AUTO_BATCH = 1024
PROBE_BATCH = 4


def batch_size_for_memory(
    free_bytes: int, per_patch_bytes: int, *, safety: float = MEMORY_SAFETY, maximum: int = MAX_AUTO_BATCH
) -> int:
    """The patches per encode batch that fit ``safety`` of ``free_bytes`` at ``per_patch_bytes`` each.

    A multiple of 8 from 8 up (tensor-core friendly), at least 1, at most ``maximum``.
    """
    if per_patch_bytes <= 0:
        return maximum
    n = int(free_bytes * safety // per_patch_bytes)
    if n >= 8:
        n -= n % 8
    return max(1, min(maximum, n))


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
        self._fitted_for: tuple[int, int] | None = None  # the patch size a CUDA batch size was chosen for
        if batch_size:
            self.batch_size = int(batch_size)
        elif self.device.type == "cuda":
            self.batch_size = self.fit_batch_size()
        else:
            self.batch_size = DEFAULT_BATCH.get(self.device.type, 16)

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

    # --- batch size from device memory -----------------------------------------------------------------------

    def patch_bytes(self, probe: int = PROBE_BATCH, size: tuple[int, int] | None = None) -> int:
        """Peak CUDA memory per patch of one probe batch through encode and projection (``size``: h, w)."""
        import torch

        h, w = size or (self.patch_size, self.patch_size)
        dev = self.device
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        with torch.inference_mode(), self._autocast():
            x = torch.rand(probe, 3, h, w, device=dev)
            out = self.model.encode_projected(x)
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) - base
        del x, out
        return -(-peak // probe)

    def free_bytes(self) -> int:
        """Device memory this process can still allocate: free on the device plus what its allocator holds."""
        import torch

        free, _total = torch.cuda.mem_get_info(self.device)
        return int(free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device))

    def fit_batch_size(self, size: tuple[int, int] | None = None) -> int:
        """The encode batch size for this CUDA device's free memory (:func:`batch_size_for_memory`).

        ``size`` (h, w) of the patches, default ``patch_size``; :meth:`project` fits again for other sizes.
        """
        self._fitted_for = size or (self.patch_size, self.patch_size)
        try:
            per_patch = self.patch_bytes(size=self._fitted_for)
            free = self.free_bytes()
        except RuntimeError as e:  # e.g. memory statistics unavailable
            log.warning("cannot measure CUDA memory (%s); batch size %d", e, DEFAULT_BATCH["cuda"])
            return DEFAULT_BATCH["cuda"]
        n = batch_size_for_memory(free, per_patch)
        log.info("batch size %d: %.0f MiB free, %.1f MiB per patch", n, free / 2**20, per_patch / 2**20)
        return n

    # --- scoring ---------------------------------------------------------------------------------------------

    def _to_device(self, array: np.ndarray):
        t = _tensor(array)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def project(self, patches: np.ndarray) -> list:
        """(M, 3, h, w) uint8 patches -> their projected features (``model.project``), computed in batches.

        One tensor per scale, (M, C_s, h_s, w_s): what pairs are compared from (``model.compare_projected``).
        """
        import torch

        size = tuple(patches.shape[-2:])
        if self._fitted_for is not None and size != self._fitted_for:  # chosen for another patch size
            self.batch_size = self.fit_batch_size(size)
        feats: list[list] = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(patches), self.batch_size):
                x = self._to_device(patches[start : start + self.batch_size])
                x = x.float().div_(255.0)  # a new tensor: the patches themselves are never written
                feats.append(self.model.encode_projected(x))
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
        feats = self.project(patches.reshape(n_img * k, *patches.shape[2:]))
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
                out = self.model.compare_projected(
                    [f[io] for f in feats], [f[ia] for f in feats], [f[ib] for f in feats]
                )
                logits.append(out.float().reshape(len(chunk), k).mean(dim=1))
        return torch.cat(logits).double().cpu().numpy()
