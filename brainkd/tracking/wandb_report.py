"""Log a model's test report to its W&B run and finish the run before the next model starts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)

# Per-class entries of ``summarize_predictions`` shown as columns of the W&B table.
PER_CLASS_COLUMNS = ("precision", "recall", "f1", "sensitivity", "specificity", "auroc")


def wandb_run_of(trainer: L.Trainer):
    """Return the W&B run of the trainer's WandbLogger, or None when it has none."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


def log_test_report(
    run,
    metrics: Mapping[str, Any],
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    examples: Sequence[tuple[np.ndarray, str]],
    plots: Mapping[str, Path],
) -> None:
    """Log the confusion matrix, a per-class table, captioned test images and the plot files.

    ``metrics`` is a dict from ``summarize_predictions`` (plus any agreement entries); its
    scalar entries also go to the run summary under ``test/``.
    """
    import wandb

    class_names = list(class_names)
    rows = [
        [name, metrics["support_per_class"][name], *(metrics[f"{column}_per_class"][name] for column in PER_CLASS_COLUMNS)]
        for name in class_names
    ]
    payload: dict[str, Any] = {
        "test/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=labels.tolist(), preds=predictions.tolist(), class_names=class_names, title="Test confusion matrix"
        ),
        "test/per_class": wandb.Table(columns=["class", "support", *PER_CLASS_COLUMNS], data=rows),
    }
    if examples:
        payload["test/examples"] = [wandb.Image(image, caption=caption) for image, caption in examples]
    for name, path in plots.items():
        payload[f"plots/{name}"] = wandb.Image(str(path))
    run.log(payload)

    scalars = {f"test/{key}": value for key, value in metrics.items() if isinstance(value, (int, float))}
    run.summary.update(scalars)


def log_checkpoint_artifact(run, checkpoint: str, role: str, metadata: Mapping[str, Any]) -> None:
    """Log a model's checkpoint file as a W&B artifact of type ``model``, aliased ``best``."""
    import wandb

    artifact = wandb.Artifact(name=f"{role}-{run.id}", type="model", metadata=dict(metadata))
    # The best checkpoint does not change after testing, so W&B may read it in place
    # instead of copying it into its staging folder.
    artifact.add_file(checkpoint, policy="immutable")
    run.log_artifact(artifact, aliases=["best"])
    log.info("Logged %s to W&B as artifact %s", checkpoint, artifact.name)


def finish_run(run, exit_code: int = 0) -> None:
    """Finish a W&B run, so that the next WandbLogger of this process starts a new one."""
    log.info("Finishing W&B run %s", run.name)
    run.finish(exit_code=exit_code)


def finish_stale_run() -> None:
    """Finish a W&B run that an earlier model or job of this process left open.

    Lightning's WandbLogger reuses an open run instead of starting its own, which would mix
    two models in one run. A run left open means its model did not finish testing, so it is
    marked as failed (exit code 1).
    """
    import wandb

    if wandb.run is not None:
        log.warning("Finishing W&B run %s, which an earlier model left open, as failed", wandb.run.name)
        finish_run(wandb.run, exit_code=1)
