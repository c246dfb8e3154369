"""Load a brainkd checkpoint for inference and prepare image files exactly as training did.

Shared by ``brainkd.predict``, ``brainkd.export`` and ``brainkd.explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainkd.checkpoints import load_weights_only
from brainkd.data.folders import is_hidden
from brainkd.data.preprocess import PreprocessSettings, preprocess_image
from brainkd.data.reading import read_gray
from brainkd.models.factory import create_model

# Checkpoint metadata (the "brainkd" entry written by ClassifierBase) needed for inference.
REQUIRED_METADATA = ("arch", "in_chans", "options", "image_size", "class_names", "preprocess", "mean", "std")


@dataclass
class CheckpointModel:
    """A trained network in eval mode with what it takes to prepare its inputs."""

    model: nn.Module
    class_names: list[str]
    settings: PreprocessSettings
    mean: float
    std: float
    metadata: dict[str, Any]
    path: str

    @property
    def image_size(self) -> int:
        return self.settings.image_size


def load_checkpoint_model(path: str | Path, setting: str = "checkpoint") -> CheckpointModel:
    """Rebuild the network of a brainkd checkpoint and load its weights (``weights_only=True``).

    ``setting`` names the argument that gave the path, for messages.
    """
    checkpoint = load_weights_only(path, setting)
    metadata = checkpoint.get("brainkd") if isinstance(checkpoint, dict) else None
    if not isinstance(metadata, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{setting} {path} is not a brainkd checkpoint (no 'brainkd' metadata or 'state_dict')")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(
            f"{setting} {path} lacks the metadata {missing} that inference needs to prepare images as in "
            "training; it was saved by an older brainkd. Train the model again to get a complete checkpoint"
        )
    if metadata["in_chans"] != 1:
        raise ValueError(f"{setting} {path} expects {metadata['in_chans']} input channels, but brainkd prepares gray images")

    settings = _preprocess_settings(metadata["preprocess"], path, setting)
    model = create_model(
        metadata["arch"],
        num_classes=len(metadata["class_names"]),
        in_chans=metadata["in_chans"],
        image_size=metadata["image_size"],
        **metadata["options"],
    )
    state = {key[len("model.") :]: value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return CheckpointModel(
        model=model,
        class_names=list(metadata["class_names"]),
        settings=settings,
        mean=float(metadata["mean"]),
        std=float(metadata["std"]),
        metadata=metadata,
        path=str(path),
    )


def _preprocess_settings(values: dict[str, Any], path: str | Path, setting: str) -> PreprocessSettings:
    known = {field.name for field in fields(PreprocessSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{setting} {path} has preprocessing settings {unknown} that this brainkd does not know")
    return PreprocessSettings(**values)


def prepare_gray(gray: np.ndarray, loaded: CheckpointModel) -> tuple[torch.Tensor, np.ndarray]:
    """Preprocess a 2-D uint8 image for the model.

    Return the standardised 1 x H x W input and the preprocessed image in [0, 1] for display.
    Like the training cache, the preprocessed image is rounded to 8 bits before the
    standardisation ``(x - mean) / std``, so the model gets the same values as in training.
    """
    image = preprocess_image(gray, loaded.settings).image
    pixels = np.round(image * 255.0).astype(np.uint8)
    display = torch.from_numpy(pixels).float() / 255.0
    model_input = ((display - loaded.mean) / loaded.std).unsqueeze(0)
    return model_input, display.numpy()


def prepare_file(path: str | Path, loaded: CheckpointModel) -> tuple[torch.Tensor, np.ndarray]:
    """Read an image file and preprocess it with ``prepare_gray``; raises ImageReadError for unusable files."""
    return prepare_gray(read_gray(path), loaded)


def list_input_files(input_path: str | Path, setting: str = "input") -> list[Path]:
    """Return the file itself, or every non-hidden file under a folder (recursively, sorted)."""
    input_path = Path(input_path).expanduser()
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise FileNotFoundError(f"{setting} {input_path} does not exist")
    files = []
    for path in sorted(input_path.rglob("*")):
        relative_parts = path.relative_to(input_path).parts
        if path.is_file() and not any(is_hidden(Path(part)) for part in relative_parts):
            files.append(path)
    if not files:
        raise FileNotFoundError(f"{setting} {input_path} contains no files")
    return files


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Return the softmax probabilities of a batch of prepared images as a float64 array."""
    logits = model(images)
    return torch.softmax(logits.double(), dim=1).cpu().numpy()
