"""Tiny brainkd jobs for tests: configs, in-process and command-line runs, and a kill switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from brainkd.data.folders import CLASS_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"


# One CPU epoch with cheap preprocessing and no progress bar, shared by the multirun tests.
QUICK_CPU_OVERRIDES = [
    "data.num_workers=0",
    "data.preprocess_workers=1",
    "data.preprocess.denoise_strength=0",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "+trainer.enable_progress_bar=false",
]


def tiny_overrides(data_root: Path, cache_dir: Path, task: str = "classifier", checkpoint_every: int = 3) -> list[str]:
    """Return overrides for a job of a few seconds on 2 CPU cores: 16 px inputs, tiny models, 2 epochs."""
    return [
        "+experiment=smoke",
        f"task={task}",
        "model=plain_cnn",
        "model.options.channels=[4,8]",
        "student=mlp",
        "student.options.input_size=8",
        "student.options.hidden=[16]",
        f"data.root={data_root}",
        f"data.cache_dir={cache_dir}",
        "data.image_size=16",
        "data.batch_size=4",
        "data.samples_per_class=null",
        "data.preprocess_workers=1",
        "data.preprocess.denoise_strength=0",
        "data.synthetic_fallback=false",
        "trainer.max_epochs=2",
        "+trainer.enable_progress_bar=false",
        "logger=none",
        "callbacks.last_checkpoint.train_time_interval=null",
        f"callbacks.last_checkpoint.every_n_train_steps={checkpoint_every}",
    ]


def model_config(name: str = "plain_cnn", **options: Any) -> DictConfig:
    """Return a ``model`` config entry; the options default to a two-block plain CNN."""
    return OmegaConf.create({"name": name, "pretrained": False, "in_chans": 1, "options": options or {"channels": [4, 8]}})


def fake_datamodule(manifest_hash: str = "abc123") -> SimpleNamespace:
    """Return the DataModule attributes that loading a teacher checkpoint reads."""
    split = SimpleNamespace(manifest_hash=manifest_hash, fold=0, num_folds=4)
    return SimpleNamespace(class_names=CLASS_NAMES, image_size=16, split=split)


def compose_config(overrides: list[str], output_dir: Path):
    """Compose the job config as the command line would, with ``paths.output_dir`` set."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def run_in_process(overrides: list[str], output_dir: Path) -> dict[str, Any]:
    """Run ``brainkd.run.train`` on the composed config and return its results."""
    from brainkd.run import train

    return train(compose_config(overrides, output_dir))


def run_command(overrides: list[str], output_dir: Path, env: dict[str, str] | None = None, timeout: int = 300):
    """Run ``python -m brainkd.run`` with ``hydra.run.dir=output_dir`` and return the CompletedProcess."""
    command = [sys.executable, "-m", "brainkd.run", *overrides, f"hydra.run.dir={output_dir}"]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def read_results(output_dir: Path) -> dict[str, Any]:
    return json.loads((output_dir / "results.json").read_text())


class KillAfterSteps(L.Callback):
    """Kill the process with SIGKILL before the first batch after ``steps`` optimiser steps.

    ``stage`` limits it to the trainer whose folder has that name (teacher, student).
    """

    def __init__(self, steps: int, stage: str | None = None):
        self.steps = steps
        self.stage = stage

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        in_stage = self.stage is None or Path(trainer.default_root_dir).name == self.stage
        if in_stage and trainer.global_step >= self.steps:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInValidation(L.Callback):
    """Kill the process with SIGKILL when the validation of epoch ``epoch`` starts."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)


def kill_overrides(steps: int, stage: str | None = None) -> list[str]:
    """Return the overrides that add KillAfterSteps to a command-line job."""
    overrides = ["+callbacks.kill._target_=tests.job_helpers.KillAfterSteps", f"+callbacks.kill.steps={steps}"]
    if stage:
        overrides.append(f"+callbacks.kill.stage={stage}")
    return overrides
