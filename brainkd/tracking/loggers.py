"""Lightning loggers and callbacks built from the ``logger`` and ``callbacks`` config groups."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

from brainkd.tracking.wandb_report import finish_stale_run

log = logging.getLogger(__name__)


def build_loggers(logger_cfg: DictConfig | None, stage_dir: Path, run_info: dict[str, Any]) -> list:
    """Instantiate every configured logger with paths and names for one model of a job.

    ``run_info`` contains ``name`` (the job's name), ``role`` (teacher, student, baseline),
    ``group``, ``tags``, ``config`` (the resolved config as plain values) and
    ``provenance`` (git commit and fold-manifest hash, added to the W&B config).
    """
    loggers = []
    for key, entry in (logger_cfg or {}).items():
        if entry is None:
            continue
        logger_class = get_class(entry.get("_target_", ""))
        if issubclass(logger_class, WandbLogger):
            finish_stale_run()
        options = {**OmegaConf.to_container(entry, resolve=True), **_logger_overrides(logger_class, stage_dir, run_info)}
        options.pop("_target_")
        # Called directly, not through hydra.utils.instantiate, whose own first parameter
        # is named ``config`` and clashes with WandbLogger's ``config`` argument.
        loggers.append(logger_class(**options))
        log.info("Logging %s metrics with %s", run_info["role"], key)
    return loggers


def _logger_overrides(logger_class: type, stage_dir: Path, run_info: dict[str, Any]) -> dict[str, Any]:
    if issubclass(logger_class, CSVLogger):
        return {"save_dir": str(stage_dir), "name": "csv", "version": ""}
    if issubclass(logger_class, TensorBoardLogger):
        return {"save_dir": str(stage_dir), "name": "tensorboard", "version": ""}
    if issubclass(logger_class, WandbLogger):
        # Without an API key no upload can succeed, so runs are recorded offline for a later `wandb sync`.
        if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"
        return {
            "save_dir": str(stage_dir),
            "name": f"{run_info['name']}-{run_info['role']}",
            "group": run_info.get("group"),
            "job_type": run_info["role"],
            "tags": list(run_info.get("tags", [])),
            "config": {**(run_info.get("config") or {}), "provenance": run_info.get("provenance")},
        }
    return {}


def build_callbacks(callbacks_cfg: DictConfig | None, stage_dir: Path) -> list:
    """Instantiate the configured callbacks; checkpoints go to ``<stage_dir>/checkpoints``."""
    callbacks = []
    for key, entry in (callbacks_cfg or {}).items():
        if entry is None:
            continue
        overrides = {}
        if issubclass(callback_class(key, entry), ModelCheckpoint):
            overrides["dirpath"] = str(stage_dir / "checkpoints")
        callbacks.append(instantiate(entry, **overrides))
    return callbacks


def callback_class(key: str, entry: Any) -> type:
    """Return the Lightning Callback class that ``callbacks.<key>`` names in its ``_target_``.

    Raises ValueError, naming the key, for an entry that is not a mapping with such a target.
    """
    if not isinstance(entry, DictConfig) or not entry.get("_target_"):
        value = OmegaConf.to_container(entry) if isinstance(entry, (DictConfig, ListConfig)) else repr(entry)
        raise ValueError(f"callbacks.{key} must be a mapping with a _target_ naming a Lightning Callback class, got {value}")
    target = entry._target_
    try:
        found = get_class(str(target))
    except (HydraException, ImportError, ValueError) as error:
        cause = error.__cause__ or error
        raise ValueError(f"callbacks.{key}._target_={target} failed to import: {cause}") from None
    if not issubclass(found, Callback):
        raise ValueError(f"callbacks.{key}._target_={target} is not a Lightning Callback class")
    return found


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """Return the config with every interpolation resolved, as plain Python values."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
