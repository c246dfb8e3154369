"""The trainer config's speed options: GPU preset values, channels-last, the one-off pass device."""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from brainkd.hardware import apply_speed_options, inference_device
from brainkd.models import create_model
from brainkd.modules import TeacherModule

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, "paths.output_dir=/tmp/brainkd-compose"])


def test_gpu_preset_sets_loader_and_model_options():
    cfg = compose_config(["trainer=gpu"])
    assert cfg.trainer._target_ == "lightning.Trainer"
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.channels_last is True
    assert cfg.trainer.compile is False
    assert cfg.data.pin_memory is True
    assert cfg.data.persistent_workers is True


def test_cpu_preset_leaves_options_off():
    cfg = compose_config(["trainer=cpu"])
    assert cfg.trainer.channels_last is False
    assert cfg.trainer.compile is False
    assert cfg.data.pin_memory is False


def test_channels_last_applied():
    model = create_model("plain_cnn", num_classes=4, image_size=16, channels=(8, 16))
    apply_speed_options(model, OmegaConf.create({"channels_last": True, "compile": False}), "student")
    weight = model.features[4].weight  # the first convolution has one input channel, where both formats coincide
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()


def test_inference_device_on_cpu():
    device, dtype = inference_device(OmegaConf.create({"accelerator": "cpu", "precision": "32-true"}))
    assert device.type == "cpu"
    assert dtype is None


def test_inference_device_follows_bf16():
    _, dtype = inference_device(OmegaConf.create({"accelerator": "cpu", "precision": "bf16-mixed"}))
    assert dtype is torch.bfloat16


@pytest.mark.slow
def test_compiled_student_trains_and_keeps_names(tmp_path):
    torch.manual_seed(0)
    model = create_model("plain_cnn", num_classes=4, image_size=16, channels=(8, 16))
    names = list(model.state_dict())
    apply_speed_options(model, OmegaConf.create({"channels_last": True, "compile": True}), "student")
    module = TeacherModule(model, ["a", "b", "c", "d"])
    images = torch.randn(32, 1, 16, 16)
    data = TensorDataset(images, torch.randint(0, 4, (32,)), torch.arange(32))
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path),
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=8))
    assert trainer.global_step == 4
    assert list(model.state_dict()) == names
