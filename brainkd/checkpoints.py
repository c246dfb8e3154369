"""Read PyTorch files without unpickling arbitrary objects, and write Lightning checkpoints atomically."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from brainkd.atomic import atomic_open
from brainkd.disk import OUTPUT_SPACE_HINT, free_bytes, megabytes, write_error

log = logging.getLogger(__name__)

SAFE_LOADING_HINT = (
    "Only files that torch.load(weights_only=True) accepts are read: tensors, numbers, strings "
    "and plain containers. Re-save the state_dict from trusted code, or use a .safetensors file."
)


def load_weights_only(path: str | Path, setting: str, mmap: bool = False) -> Any:
    """Load a PyTorch file onto the CPU with ``torch.load(weights_only=True)``.

    ``setting`` names the config key or argument that gave the path, for messages. With
    ``mmap`` the tensors stay on disk until they are used.
    Raises FileNotFoundError for a missing file, and ValueError for a file that contains
    other objects (such as pickled classes) or is not a readable PyTorch file.
    """
    path = str(path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{setting} {path} is not a regular file; give the path of a checkpoint or weights file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{setting} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise ValueError(f"rejected {setting} {path}: {rejection_reason(error)}. {SAFE_LOADING_HINT}") from None
    except (RuntimeError, EOFError, ValueError, IndexError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{setting} {path} is not a readable PyTorch file, or is truncated ({type(error).__name__}: "
            f"{_first_line(error)})"
        ) from None


def rejection_reason(error: pickle.UnpicklingError) -> str:
    """Describe why ``torch.load(weights_only=True)`` rejected a file, naming the blocked object where torch does."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's first line is a generic notice, so prefer the line that names the blocked global.
    specific = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    detail = type(error).__name__
    if specific:
        detail = specific[0]
    elif lines:
        detail = lines[0]
    return f"it contains objects other than tensors and plain containers ({detail})"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def save_torch_file(obj: Any, path: str | Path, kind: str, hint: str, sync: bool = False) -> None:
    """Save ``obj`` with ``torch.save`` to ``path`` atomically.

    A write that fails with an OSError, such as a full disk, raises ``brainkd.disk.WriteFailed``,
    which names ``kind`` (the file's role) and ends with ``hint``.

    torch's zip writer masks the OSError of a full disk with an "unexpected pos" RuntimeError
    when it closes the archive, so the OSError is dug out of the exception's context.
    """
    try:
        with atomic_open(path, "wb", sync=sync) as stream:
            torch.save(obj, stream)
    except (OSError, RuntimeError) as error:
        cause = error if isinstance(error, OSError) else error.__context__
        if not isinstance(cause, OSError):
            raise
        raise write_error(cause, f"{kind} {path} (about {megabytes(_tensor_bytes(obj))})", path, hint) from cause


# Tensors that a checkpoint keeps per trainable weight besides the weight: AdamW's two moments, SGD's momentum.
OPTIMISER_COPIES = {"adamw": 2, "sgd": 1}


def checkpoint_bytes(model: torch.nn.Module, optimizer: str) -> int:
    """Estimate the size of a checkpoint of ``model`` that keeps the state of ``optimizer`` (adamw or sgd)."""
    weights = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
    trainable = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters() if parameter.requires_grad)
    return weights + OPTIMISER_COPIES[optimizer] * trainable


def warn_if_short_of_space(folder: str | Path, needed: int) -> bool:
    """Log a warning and return True when the disk of the checkpoint ``folder`` has less than ``needed`` bytes free."""
    free = free_bytes(folder)
    if free is None or free >= needed:
        return False
    log.warning(
        "%s has %s free, and this stage's checkpoints take about %s while it trains, so saving may fail. %s",
        folder, megabytes(free), megabytes(needed), OUTPUT_SPACE_HINT,
    )
    return True


def _tensor_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Add up the storage of the tensors in nested dicts, lists and tuples, counting shared storage once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(value, seen) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(value, seen) for value in obj)
    return 0


# Keys of a Lightning checkpoint that only resuming the training needs.
TRAINING_STATE_KEYS = ("optimizer_states", "lr_schedulers")


def drop_training_state(path: str | Path, checkpoint: dict[str, Any] | None = None) -> tuple[int, int]:
    """Rewrite a checkpoint without its optimiser and scheduler state and return its size before and after.

    Testing, teacher checkpoints, predict, export and explain read only the weights and the
    ``brainkd`` metadata. AdamW keeps two tensors per weight, so about a third of the file
    remains: 92 of 276 MB for a ResNeXt-50 checkpoint. ``checkpoint`` is the file's content
    when the caller has loaded it already.
    """
    path = Path(path)
    before = path.stat().st_size
    if checkpoint is None:
        checkpoint = load_weights_only(path, "checkpoint")
    if not any(key in checkpoint for key in TRAINING_STATE_KEYS):
        return before, before
    weights = {key: value for key, value in checkpoint.items() if key not in TRAINING_STATE_KEYS}
    save_torch_file(weights, path, "checkpoint", OUTPUT_SPACE_HINT, sync=True)
    return before, path.stat().st_size


def has_training_state(path: str | Path, setting: str) -> bool:
    """Tell whether a checkpoint keeps the optimiser state that resuming needs.

    Raises ValueError, naming ``setting``, for a file that ``load_weights_only`` rejects.
    """
    # mmap leaves the tensors of a checkpoint of several GB on disk.
    return "optimizer_states" in load_weights_only(path, setting, mmap=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, writing each file beside its target and renaming it into place.

    A process killed while saving leaves the previous checkpoint whole. Lightning 2.6's own
    writer (through fsspec) stages the file in the system temporary folder, and moving it
    from there to another file system is a copy that can be cut short. Loading uses
    ``weights_only=True`` unless the caller passes another value.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        save_torch_file(checkpoint, path, "checkpoint", OUTPUT_SPACE_HINT, sync=True)

    def load_checkpoint(self, path: str | Path, *args: Any, weights_only: bool | None = None, **options: Any) -> dict[str, Any]:
        weights_only = True if weights_only is None else weights_only
        return super().load_checkpoint(path, *args, weights_only=weights_only, **options)
