"""Read PyTorch files without unpickling arbitrary objects, and write Lightning checkpoints atomically."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from brainkd.atomic import atomic_open

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
    with atomic_open(path, "wb", sync=True) as stream:
        torch.save(weights, stream)
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
        with atomic_open(path, "wb", sync=True) as stream:
            torch.save(checkpoint, stream)

    def load_checkpoint(self, path: str | Path, *args: Any, weights_only: bool | None = None, **options: Any) -> dict[str, Any]:
        weights_only = True if weights_only is None else weights_only
        return super().load_checkpoint(path, *args, weights_only=weights_only, **options)
