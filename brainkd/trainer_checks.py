"""Check the trainer and callbacks config before the data is prepared and the first model trains."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from brainkd.modules.metrics import scalar_names
from brainkd.pipeline import build_trainer


def check_trainer_config(cfg: DictConfig) -> None:
    """Build a trainer from ``trainer`` and ``callbacks`` without loggers, and raise ValueError if that fails.

    Lightning checks the accelerator, devices, precision and strategy when the Trainer is
    built, and ModelCheckpoint its mode. Doing it here, before the images are preprocessed,
    turns a typo into an error at once, in one line.
    """
    without_loggers = OmegaConf.masked_copy(cfg, ["trainer", "callbacks"])
    try:
        # The probe's folder is thrown away, so the job's output holds only real stages.
        with _quiet_lightning(), tempfile.TemporaryDirectory(prefix="brainkd-probe-") as stage_dir:
            build_trainer(without_loggers, Path(stage_dir), run_info={})
    except (HydraException, ImportError) as error:
        cause = error.__cause__ or error
        reason = " ".join(str(cause).split())
        raise ValueError(f"invalid trainer or callbacks config: {type(cause).__name__}: {reason}") from None


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
    """Hide Lightning's notes on the hardware it found: the real trainer prints them again."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
