"""Every config preset composes and resolves."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
GROUP_CHOICES = [
    (group, path.stem)
    for group in ("model", "student", "trainer", "logger", "callbacks", "data")
    for path in sorted((CONF_DIR / group).glob("*.yaml"))
]


def compose_config(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # ${hydra:...} resolves only inside a running job, so paths.output_dir gets a value.
        return compose(config_name="config", overrides=[*overrides, "paths.output_dir=/tmp/brainkd-compose"])


def resolved(cfg):
    return OmegaConf.to_container(cfg, resolve=True)


def test_experiment_presets_exist():
    assert {"distill", "teacher", "smoke"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = compose_config([f"+experiment={experiment}"])
    values = resolved(cfg)
    assert values["task"] in ("classifier", "distill")
    assert values["experiment_name"] == experiment


@pytest.mark.parametrize("group, choice", GROUP_CHOICES)
def test_group_choice_composes(group, choice):
    cfg = compose_config([f"{group}={choice}"])
    assert resolved(cfg)


def test_distill_preset_uses_paper_models():
    cfg = compose_config(["+experiment=distill"])
    assert cfg.task == "distill"
    assert cfg.model.name == "resnext50_32x4d"
    assert cfg.student.name == "resnext26ts"


def test_gpu_trainer_uses_bf16():
    cfg = compose_config(["trainer=gpu"])
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.accelerator == "gpu"


def test_data_root_follows_environment(monkeypatch):
    monkeypatch.setenv("BRAINKD_DATA", "/somewhere/else")
    cfg = compose_config([])
    assert cfg.data.root == "/somewhere/else"
