"""Sweep presets and launchers compose; DDP is rejected inside a multirun and tests each image once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from brainkd import pipeline
from brainkd.data.synthetic import make_synthetic_dataset

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_folds_sweep_follows_num_folds():
    cfg = compose_with_hydra(["+experiment=distill", "+sweep=folds", "data.num_folds=3"])
    assert cfg.hydra.sweeper.params["data.fold"] == "range(0,3)"


def test_folds_sweep_is_multirun():
    cfg = compose_with_hydra(["+experiment=distill", "+sweep=folds"])
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"


def test_kd_grid_sweeps_temperature_and_alpha():
    cfg = compose_with_hydra(["+experiment=distill", "+sweep=kd_grid"])
    assert set(cfg.hydra.sweeper.params) == {"distill.temperature", "distill.alpha"}
    assert cfg.task == "distill"


def test_kd_grid_folds_adds_folds():
    cfg = compose_with_hydra(["+experiment=distill", "+sweep=kd_grid_folds"])
    assert set(cfg.hydra.sweeper.params) == {"distill.temperature", "distill.alpha", "data.fold"}
    assert cfg.hydra.sweeper.params["data.fold"] == "range(0,10)"


def test_sequential_launcher_is_basic():
    cfg = compose_with_hydra(["hydra/launcher=sequential"])
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")


def test_optuna_preset_composes():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_with_hydra(["+experiment=distill", "+sweep=kd_optuna"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"distill.temperature", "distill.alpha", "optim.lr"}


def test_parallel_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    cfg = compose_with_hydra(["+sweep=folds", "hydra/launcher=parallel"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 2


def test_slurm_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_with_hydra(["+sweep=folds", "hydra/launcher=slurm"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.tasks_per_node == 1


@pytest.fixture
def hydra_mode():
    """Set Hydra's run mode for the test, as a running job would see it, and clear it after."""

    def set_mode(mode: str) -> None:
        HydraConfig.instance().set_config(compose_with_hydra([f"hydra.mode={mode}"]))

    yield set_mode
    HydraConfig.instance().cfg = None


def ddp_trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False)


def test_ddp_in_multirun_rejected(hydra_mode):
    hydra_mode("MULTIRUN")
    with pytest.raises(ValueError, match="cannot run inside a multirun"):
        pipeline.check_launch_in_multirun(ddp_trainer())


def test_ddp_in_single_run_accepted(hydra_mode):
    hydra_mode("RUN")
    pipeline.check_launch_in_multirun(ddp_trainer())


@pytest.mark.slow
def test_ddp_tests_each_image_once(tmp_path):
    dataset = make_synthetic_dataset(tmp_path / "dataset", train_per_class=8, test_per_class=3, size=32)
    # 11 test images over 2 processes: the distributed sampler repeats one to even them out.
    (dataset / "Testing" / "glioma" / "glioma_0000.jpg").unlink()
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "brainkd.run", "+experiment=student_only", "model=plain_cnn", "model.options.channels=[4]",
        f"data.root={dataset}", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=16", "data.batch_size=4",
        "data.val_fraction=0.25", "data.num_workers=0", "data.preprocess_workers=1", "data.preprocess.denoise_strength=0",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false",
        "trainer.max_epochs=1", "+trainer.enable_progress_bar=false", "callbacks.last_checkpoint.train_time_interval=null",
        "logger=csv", f"hydra.run.dir={run_dir}",
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]

    results = json.loads((run_dir / "results.json").read_text())
    model = results["models"]["student_only"]
    assert model["test"]["n"] == 11
    assert sum(map(sum, model["test"]["confusion_matrix"])) == 11
    assert model["test_twin_free"]["n"] == sum(results["data"]["counts"]["test_twin_free"].values())
