"""Settings of the trainer config that brainkd applies itself: memory format, compilation, device."""

from __future__ import annotations

import logging
import os

import torch
from omegaconf import DictConfig
from torch import nn

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def apply_speed_options(model: nn.Module, trainer_cfg: DictConfig, role: str) -> nn.Module:
    """Convert ``model`` in place to channels-last and compile it when ``trainer.channels_last`` and ``trainer.compile`` are true.

    ``nn.Module.compile`` compiles the forward pass in place, so parameter names, state
    dicts and checkpoints stay those of the plain model.
    """
    if trainer_cfg.get("channels_last", False):
        model.to(memory_format=torch.channels_last)
        log.info("The %s uses the channels-last memory format", role)
    if trainer_cfg.get("compile", False) and getattr(model, "_compiled_call_impl", None) is None:
        model.compile()
        log.info("The %s is compiled with torch.compile; the first steps include the compilation", role)
    return model


def inference_device(trainer_cfg: DictConfig) -> tuple[torch.device, torch.dtype | None]:
    """Return the device and autocast dtype for a one-off forward pass outside the Trainer.

    A GPU is used when ``trainer.accelerator`` is ``gpu``, ``cuda`` or ``auto`` and CUDA is
    available. The autocast dtype follows ``trainer.precision``.
    """
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    use_gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    # Processes that torchrun or Lightning's DDP launcher starts find their GPU in LOCAL_RANK.
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_gpu else torch.device("cpu")
    dtype = AUTOCAST_DTYPES.get(str(trainer_cfg.get("precision", "32-true")))
    if dtype is torch.float16 and not use_gpu:
        dtype = None
    return device, dtype
