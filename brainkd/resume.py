"""Resume interrupted runs: each stage's checkpoint, the random state, and records of finished stages.

A job trains one or two stages (``<output_dir>/teacher``, ``<output_dir>/student`` or the
classifier's role), each with its own ``checkpoints/last.ckpt``. ``ckpt_path=last``
resumes every stage from its own last checkpoint; a distill job reuses a teacher that
finished before the interruption instead of training it again.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import to_absolute_path
from lightning.pytorch.callbacks import ModelCheckpoint

from brainkd.checkpoints import has_training_state
from brainkd.results import write_json

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
STAGE_RECORD = "stage.json"


def check_resume_request(ckpt_path: str | None, output_dir: Path) -> None:
    """Raise FileNotFoundError when ``ckpt_path`` points at nothing to resume from, and ValueError
    when it points at a checkpoint that cannot be resumed: an unsafe file or one without optimiser state.
    """
    if ckpt_path is None:
        return
    if str(ckpt_path) == "last":
        found = list(output_dir.glob(f"*/checkpoints/{LAST_CHECKPOINT}")) + list(output_dir.glob(f"*/{STAGE_RECORD}"))
        if not found:
            raise FileNotFoundError(
                f"ckpt_path=last, but {output_dir} contains no <stage>/checkpoints/{LAST_CHECKPOINT}. "
                "Set hydra.run.dir to the output folder of the run to resume, or ckpt_path to a checkpoint file."
            )
    else:
        path = Path(to_absolute_path(str(ckpt_path)))
        if not path.exists():
            raise FileNotFoundError(f"ckpt_path {ckpt_path} does not exist; give a checkpoint file or 'last'")
        if not has_training_state(path, "ckpt_path"):
            raise ValueError(
                f"ckpt_path {ckpt_path} contains no optimiser state, which resuming needs (brainkd removes it "
                f"from each stage's best checkpoint after training). Resume from {path.parent / LAST_CHECKPOINT}, "
                "or pass the file as distill.teacher_checkpoint to reuse the model."
            )


def stage_checkpoint(ckpt_path: str | None, stage_dir: Path, final_stage: bool) -> str | None:
    """Return the checkpoint a stage resumes from, or None to train it from the start.

    ``last`` means the stage's own ``checkpoints/last.ckpt`` where it exists. An explicit
    path applies to the final stage of the job only (the student of a distill job).
    """
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        last = stage_dir / "checkpoints" / LAST_CHECKPOINT
        if last.is_file():
            return str(last)
        log.info("No %s in %s, so the %s stage starts from the beginning", LAST_CHECKPOINT, stage_dir, stage_dir.name)
        return None
    return to_absolute_path(str(ckpt_path)) if final_stage else None


def write_stage_record(stage_dir: Path, checkpoint: str | None, summary: dict[str, Any]) -> None:
    """Record that a stage finished, with its best checkpoint and its results entry."""
    write_json(stage_dir / STAGE_RECORD, {"status": "completed", "checkpoint": checkpoint, "summary": summary})


def read_stage_record(stage_dir: Path) -> dict[str, Any] | None:
    """Return the record of a finished stage whose checkpoint still exists, else None."""
    path = stage_dir / STAGE_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        log.warning("Stage record %s is unreadable (%s), so the stage runs again", path, error)
        return None
    checkpoint = record.get("checkpoint") if isinstance(record, dict) else None
    if not checkpoint or not Path(checkpoint).is_file() or "summary" not in record:
        log.warning("Stage record %s names no existing checkpoint, so the stage runs again", path)
        return None
    return record


def capture_random_state() -> dict[str, Any]:
    """Return the global random states of Python, NumPy, PyTorch and initialised CUDA devices.

    NumPy's state is stored as a tensor so that ``torch.load(weights_only=True)`` reads it back.
    """
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_random_state(state: dict[str, Any]) -> None:
    """Set the global random states that ``capture_random_state`` returned."""
    random.setstate(_as_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((
        numpy_state["name"],
        numpy_state["keys"].numpy().astype(np.uint32),
        numpy_state["position"],
        numpy_state["has_gauss"],
        numpy_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate requires tuples, and a checkpoint round trip may turn them into lists.
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(item) for item in value)
    return value


class ResumeHint(L.Callback):
    """Log how to resume when Ctrl-C stops a stage, because Lightning only reports a graceful shutdown."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            output_dir = Path(trainer.default_root_dir).parent
            log.warning("Interrupted. To resume, run the same command with ckpt_path=last and hydra.run.dir=%s", output_dir)


class RandomStateCallback(L.Callback):
    """Save the global random states with each checkpoint; restore them before the first batch after a resume.

    Dropout and other random layers draw from these generators, so without this a resumed
    run would draw differently from the run it continues. The training order and the
    augmentation draws come from ``ResumableDataLoader`` and do not use them.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending is None:
            return
        # NOTE: a checkpoint contains the states of rank 0 only, so several processes keep their own.
        if trainer.world_size == 1:
            restore_random_state(self._pending)
        self._pending = None


class MidEpochCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that refreshes ``last.ckpt`` during epochs and after each validation.

    It skips the point after an epoch's last batch, because Lightning resumes a
    checkpoint written there by starting the next
    epoch, so the interrupted epoch would never be validated and could not become the
    best checkpoint. The checkpoint written after validation covers that point instead.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        # Lightning 2.6 refreshes last.ckpt after validation only in a step where a top-k
        # checkpoint was saved, so an epoch that did not improve would leave it behind.
        if self._should_skip_saving_checkpoint(trainer):
            return
        others = [callback for callback in trainer.checkpoint_callbacks if callback is not self and callback.save_last]
        if any(callback._last_global_step_saved == trainer.global_step for callback in others):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
