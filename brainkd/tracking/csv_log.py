"""A CSV logger whose ``metrics.csv`` keeps the rows of a stage's earlier attempt when the stage resumes."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, which restores the rows logged before the step a stage resumes at.

    Lightning deletes ``metrics.csv`` when a logger opens its folder again, so a resumed
    stage would lose its earlier epochs. This logger reads the file when it is built, and
    RestoreMetricRows passes it the step the stage resumes at. The earlier rows from before
    that step are written back, and the rest are dropped because the resumed run logs them again.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._earlier_rows = read_metric_rows(Path(self.log_dir) / METRICS_FILE)

    @rank_zero_only
    def restore_rows(self, resume_step: int) -> int:
        """Restore the earlier rows logged before ``resume_step`` and return their count."""
        restored = [row for row in self._earlier_rows if row["step"] < resume_step]
        self._earlier_rows = []
        if restored:
            self.experiment.metrics[:0] = restored
            self.save()
        return len(restored)


class RestoreMetricRows(L.Callback):
    """Pass each ResumableCSVLogger the step that a resumed stage starts at.

    Lightning calls ``on_load_checkpoint`` whenever ``fit`` resumes from a checkpoint, also
    from one taken after the last epoch, where ``on_train_start`` is never called.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        resume_step = int(checkpoint.get("global_step", 0))
        for logger in trainer.loggers:
            if not isinstance(logger, ResumableCSVLogger):
                continue
            restored = logger.restore_rows(resume_step)
            if restored:
                log.info("Restored %d rows of %s from before step %d", restored, logger.log_dir, resume_step)
            elif resume_step > 0:
                log.warning("%s contains no rows from before step %d, so its curves start at the resume",
                            Path(logger.log_dir) / METRICS_FILE, resume_step)


def read_metric_rows(path: Path) -> list[dict[str, Any]]:
    """Read a ``metrics.csv`` as rows of numbers, leaving out empty cells.

    A missing or unreadable file gives no rows.
    """
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            records = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        if path.exists():
            log.warning("Could not read the earlier metrics in %s (%s), so a resumed stage would start the file again", path, error)
        return []
    rows = []
    for record in records:
        row = {key: _number(value) for key, value in record.items() if key and value not in (None, "")}
        if isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _number(text: str) -> int | float | str:
    """Turn a cell back into the value Lightning wrote, so that an epoch of 0 is written as 0 again, not 0.0."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return text
