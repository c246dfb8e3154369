"""Build classifiers by name: timm's models, or brainkd's own comparison models."""

from __future__ import annotations

import difflib
import logging
import pickle
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from torch import nn

from brainkd.checkpoints import SAFE_LOADING_HINT, load_weights_only, rejection_reason

log = logging.getLogger(__name__)

ModelBuilder = Callable[..., nn.Module]
_LOCAL_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder ``(num_classes, in_chans, image_size, **options) -> nn.Module`` under ``name``."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        _LOCAL_MODELS[name] = builder
        return builder

    return decorate


def local_model_names() -> list[str]:
    """Return the names of brainkd's own models."""
    _import_local_models()
    return sorted(_LOCAL_MODELS)


def _import_local_models() -> None:
    # The comparison models register themselves on import.
    import brainkd.models.registry  # noqa: F401


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 1,
    image_size: int = 224,
    pretrained: bool = False,
    weights_path: str | None = None,
    **options: Any,
) -> nn.Module:
    """Create a classifier that maps ``B x in_chans x H x W`` images to ``B x num_classes`` logits.

    ``pretrained`` downloads timm's weights; ``weights_path`` loads a local weights file
    (safetensors, or a PyTorch state dict read with ``weights_only=True``) instead.
    A head whose class count differs from the weights is newly initialised.
    """
    _import_local_models()
    if weights_path is not None:
        weights_path = str(Path(weights_path).expanduser())
        if not Path(weights_path).is_file():
            raise FileNotFoundError(f"model.weights_path {weights_path} does not exist")

    if name in _LOCAL_MODELS:
        model = _LOCAL_MODELS[name](num_classes=num_classes, in_chans=in_chans, image_size=image_size, **options)
        if pretrained and weights_path is None:
            raise ValueError(f"model {name!r} has no downloadable weights; set model.pretrained=false or model.weights_path")
        if weights_path is not None:
            load_weights_file(model, weights_path)
    elif timm.is_model(name):
        model = _create_timm_model(name, num_classes, in_chans, pretrained, weights_path, options)
    else:
        raise ValueError(_unknown_model_message(name))

    if pretrained or weights_path:
        log.info("Model %s starts from pretrained weights (%s)", name, weights_path or "downloaded by timm")
    else:
        log.info("Model %s is trained from scratch (no pretrained weights)", name)
    return model


def _create_timm_model(
    name: str, num_classes: int, in_chans: int, pretrained: bool, weights_path: str | None, options: dict[str, Any]
) -> nn.Module:
    overlay = {"file": weights_path} if weights_path else None
    try:
        return timm.create_model(
            name,
            pretrained=bool(pretrained or weights_path),
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            in_chans=in_chans,
            **options,
        )
    except (OSError, RuntimeError, ValueError) as error:
        if not (pretrained or weights_path):
            raise
        if isinstance(error.__cause__, pickle.UnpicklingError):
            # timm reads weights with weights_only=True and reports a rejected file as a RuntimeError.
            reason = rejection_reason(error.__cause__)
            raise ValueError(f"rejected model.weights_path {weights_path}: {reason}. {SAFE_LOADING_HINT}") from None
        raise RuntimeError(
            f"could not load pretrained weights for model {name!r}: {error}. Without network access, "
            "download the weights elsewhere and set model.weights_path=/path/to/weights, or train from "
            "scratch with model.pretrained=false"
        ) from error


def load_weights_file(model: nn.Module, path: str) -> None:
    """Load a state dict from a safetensors file or a ``weights_only`` PyTorch file."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = load_weights_only(path, "model.weights_path")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model.load_state_dict(state)


def check_model_name(name: str, key: str = "model.name") -> None:
    """Raise ValueError when ``name`` is neither a timm model nor one of brainkd's own."""
    _import_local_models()
    if name not in _LOCAL_MODELS and not timm.is_model(name):
        raise ValueError(f"cannot build {key}={name!r}: {_unknown_model_message(name)}")


def _unknown_model_message(name: str) -> str:
    known = local_model_names()
    close = difflib.get_close_matches(name, known + timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close names: {', '.join(close)}." if close else ""
    return (
        f"unknown model name {name!r}.{hint} Use a timm model name (see timm.list_models()) "
        f"or one of brainkd's own models: {', '.join(known)}."
    )


def count_parameters(model: nn.Module) -> int:
    """Return the number of parameters of a model."""
    return sum(parameter.numel() for parameter in model.parameters())


def check_input_size(model: nn.Module, name: str, in_chans: int, image_size: int) -> None:
    """Run a tiny forward pass and raise a clear ValueError when the image size is too small."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, image_size, image_size))
    except RuntimeError as error:
        raise ValueError(
            f"data.image_size={image_size} is too small for model {name!r} ({error}); use a larger data.image_size"
        ) from error
    finally:
        model.train(was_training)
