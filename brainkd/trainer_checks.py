"""Check the trainer and callbacks config before the data is prepared and the first model trains."""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from omegaconf import DictConfig, OmegaConf

from brainkd import checks
from brainkd.modules.metrics import scalar_names
from brainkd.pipeline import build_trainer

# Trainer arguments of the default config that Lightning compares with numbers only once fit starts.
TRAINER_INTEGERS = {
    "log_every_n_steps": 1,
    "num_sanity_val_steps": -1,
    "accumulate_grad_batches": 1,
    "check_val_every_n_epoch": 1,
    "max_steps": -1,
}


def check_trainer_config(cfg: DictConfig) -> None:
    """Build a trainer from ``trainer`` and ``callbacks`` without loggers, and raise ValueError if that fails.

    Lightning checks the accelerator, devices, precision and strategy when the Trainer is
    built, ModelCheckpoint its mode, and ``build_callbacks`` each entry's ``_target_``. Doing
    it here, before the images are preprocessed, turns a typo into an error at once, in one line.
    """
    for key, low in TRAINER_INTEGERS.items():
        if cfg.trainer.get(key) is not None:
            checks.integer(f"trainer.{key}", cfg.trainer.get(key), low)
    if "deterministic" in cfg.trainer and cfg.trainer.deterministic not in (True, False, "warn", None):
        raise ValueError(f"trainer.deterministic must be true, false or warn, got {cfg.trainer.deterministic!r}")

    without_loggers = OmegaConf.masked_copy(cfg, ["trainer", "callbacks"])
    try:
        # The probe's folder is thrown away, so the job's output holds only real stages.
        with _quiet_lightning(), tempfile.TemporaryDirectory(prefix="brainkd-probe-") as stage_dir:
            trainer = build_trainer(without_loggers, Path(stage_dir), run_info={})
    except (HydraException, ImportError) as error:
        cause = error.__cause__ or error
        reason = " ".join(str(cause).split())
        raise ValueError(f"invalid trainer or callbacks config: {type(cause).__name__}: {reason}{_overrides_note()}") from None
    check_strategy(trainer, cfg.trainer.get("strategy"), bool(cfg.trainer.get("sync_batchnorm")))


def check_strategy(trainer: L.Trainer, strategy: object, sync_batchnorm: bool) -> None:
    """Raise ValueError for a strategy that brainkd cannot run: spawned processes, or SyncBatchNorm on CPUs."""
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        raise ValueError(
            f"trainer.strategy={strategy} starts its processes by spawning, which brainkd does not support: "
            "the trained models stay in the spawned processes. Use trainer.strategy=ddp (or trainer=ddp)."
        )
    if isinstance(trainer.accelerator, CPUAccelerator) and sync_batchnorm:
        raise ValueError(
            "trainer.sync_batchnorm=true needs GPUs, and this trainer runs on CPUs. "
            "Set trainer.sync_batchnorm=false, or trainer.accelerator=gpu on a machine with GPUs."
        )


def _overrides_note() -> str:
    """Name the trainer and callbacks overrides of the command line, which most such errors come from."""
    if not HydraConfig.initialized():
        return ""
    overrides = [item for item in HydraConfig.get().overrides.task if re.match(r"[+~]*(trainer|callbacks)\b", item)]
    return f" (overrides given: {' '.join(overrides)})" if overrides else ""


def logged_metrics(class_names: list[str], train_metrics: Iterable[str]) -> list[str]:
    """Name every metric that a fitted module logs: ``train_metrics`` and the validation metrics."""
    return [*train_metrics, "val/loss", *(f"val/{name}" for name in scalar_names(class_names))]


def check_monitors(callbacks_cfg: DictConfig | None, logged: Iterable[str]) -> None:
    """Raise ValueError for a callback whose ``monitor`` names a metric that the job never logs.

    Lightning would only notice after the first validation epoch.
    """
    logged = sorted(logged)
    for key, entry in (callbacks_cfg or {}).items():
        monitor = None if entry is None else entry.get("monitor")
        if monitor is not None and monitor not in logged:
            raise ValueError(
                f"callbacks.{key}.monitor={monitor} names a metric that this job does not log. "
                f"Choose one of: {', '.join(logged)}"
            )


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's notes and warnings on the hardware and precision: the real trainer emits them again."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
