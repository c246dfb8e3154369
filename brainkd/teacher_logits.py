"""The teacher's logits on the un-augmented training images, computed once and cached on disk.

A file ``<cache_dir>/teacher-logits/<key>.pt`` contains one row of logits per training image,
in dataset order. The key hashes every input of those logits: the images' content
hashes in dataset order, the preprocessing settings, the input standardisation, the
teacher's weights, the fold and the precision, so a changed input never reuses a stale file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from brainkd import checks
from brainkd.data.cache import settings_key
from brainkd.checkpoints import save_torch_file

log = logging.getLogger(__name__)

TEACHER_LOGITS_MODES = ("auto", "cached", "online")
CACHE_FOLDER = "teacher-logits"


def check_mode(mode: str) -> None:
    """Raise ValueError unless ``mode`` is a valid ``distill.teacher_logits`` value."""
    checks.choice("distill.teacher_logits", mode, TEACHER_LOGITS_MODES)


def resolve_mode(mode: str, training_is_augmented: bool) -> str:
    """Return the mode that runs: ``auto`` becomes ``cached`` without augmentation, else ``online``.

    Cached logits are exact only when the teacher would see the same image every epoch.
    With augmentation they come from the un-augmented image while the student trains on
    an augmented one. That is an approximation, so ``auto`` picks them only when exact.
    """
    check_mode(mode)
    if mode == "auto":
        return "online" if training_is_augmented else "cached"
    return mode


def is_augmented(dataset: Dataset) -> bool:
    """Tell whether a dataset applies a random augmentation with at least one step."""
    augmentation = getattr(dataset, "augmentation", None)
    if augmentation is None:
        return False
    steps = getattr(augmentation, "transforms", None)
    return steps is None or len(steps) > 0


def weights_hash(model: nn.Module) -> str:
    """Return the SHA-256 of a model's state dict: every name, dtype, shape and value."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # Viewed as bytes, so every dtype (bfloat16 too) hashes without conversion.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(
    content_hashes: list[str],
    preprocess_key: str,
    teacher_hash: str,
    fold: dict[str, Any],
    normalization: tuple[float, float],
    precision: str,
) -> str:
    """Return the key of one set of teacher logits from everything that determines them."""
    payload = {
        "images": hashlib.sha256("\n".join(content_hashes).encode()).hexdigest(),
        "preprocess": preprocess_key,
        "teacher": teacher_hash,
        "fold": fold,
        "normalization": list(normalization),
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def compute_teacher_logits(
    teacher: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Run the frozen teacher once over ``dataset`` without augmentation.

    Returns float32 logits of shape ``len(dataset) x num_classes`` on the CPU, row ``i``
    for dataset index ``i``. The dataset must return the image first and have an
    ``augmentation`` attribute, as CachedImageDataset does.
    """
    plain = copy.copy(dataset)
    plain.augmentation = None
    device = torch.device(device)
    was_training = teacher.training
    teacher.eval().to(device)

    # Batches are gathered by hand: a DataLoader would draw from the global random
    # generator and change the student's training draws that follow.
    rows: list[torch.Tensor] = []
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    try:
        with torch.no_grad(), autocast:
            for start in range(0, len(plain), batch_size):
                images = torch.stack([plain[index][0] for index in range(start, min(start + batch_size, len(plain)))])
                rows.append(teacher(images.to(device)).float().cpu())
    finally:
        teacher.train(was_training)
    return torch.cat(rows)


def load_logits(path: Path, num_images: int) -> torch.Tensor | None:
    """Load cached logits, or return None when the file is missing, unreadable or of another size."""
    try:
        logits = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        log.warning("Cached teacher logits %s are unreadable (%s), so they are computed again", path, error)
        return None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != num_images:
        log.warning("Cached teacher logits %s do not have one row per training image, so they are computed again", path)
        return None
    return logits


def save_logits(path: Path, logits: torch.Tensor) -> None:
    """Write logits atomically: to a temporary file in the same folder, then rename."""
    save_torch_file(logits, path, "teacher logits", "Free space there, or set BRAINKD_CACHE or data.cache_dir to a folder on another disk.")


def load_or_compute(
    cache_dir: str | Path,
    key: str,
    teacher: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, bool]:
    """Return the teacher logits of ``dataset`` and whether they came from the disk cache."""
    path = Path(cache_dir).expanduser() / CACHE_FOLDER / f"{key}.pt"
    logits = load_logits(path, len(dataset))
    if logits is not None:
        log.info("Loaded the teacher's logits of %d training images from %s", len(dataset), path)
        return logits, True

    log.info("Computing the teacher's logits of %d un-augmented training images on %s", len(dataset), device)
    started = time.perf_counter()
    logits = compute_teacher_logits(teacher, dataset, batch_size, device, autocast_dtype)
    save_logits(path, logits)
    log.info("Computed the teacher's logits in %.1f s and saved them to %s", time.perf_counter() - started, path)
    return logits, False


def logits_for_training(
    mode: str,
    teacher: nn.Module,
    datamodule: Any,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> tuple[str, torch.Tensor | None]:
    """Resolve ``distill.teacher_logits`` and return the mode that runs with its cached logits.

    ``datamodule`` is a set-up BrainMRIDataModule. The logits are None in online mode.
    NOTE: under DDP every process runs the teacher over all training images itself,
    unless the logits are already on disk. The writes are atomic, so the file stays whole.
    """
    train = datamodule.dataset("train")
    augmented = is_augmented(train)
    resolved = resolve_mode(mode, augmented)
    if resolved == "online":
        log.info("Teacher logits: online, the teacher runs on every training batch (distill.teacher_logits=%s)", mode)
        return resolved, None

    split = datamodule.split
    key = cache_key(
        content_hashes=[sample.content_hash for sample in datamodule.samples("train")],
        preprocess_key=settings_key(datamodule.preprocess_settings),
        teacher_hash=weights_hash(teacher),
        fold={"fold": split.fold, "num_folds": split.num_folds, "manifest_hash": split.manifest_hash},
        normalization=(float(datamodule.mean), float(datamodule.std)),
        precision=str(autocast_dtype or "float32"),
    )
    logits, _ = load_or_compute(
        datamodule.cache_dir, key, teacher, train, datamodule.batch_size, device, autocast_dtype
    )
    if augmented:
        log.info(
            "Teacher logits: cached, from the un-augmented training images while the student trains on augmented "
            "ones. This approximates online distillation (distill.teacher_logits=online is exact)"
        )
    else:
        log.info("Teacher logits: cached. Training augmentation is off, so they equal the online logits")
    return resolved, logits
