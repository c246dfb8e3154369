"""Checkpoints and weights files are read without unpickling arbitrary objects."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from brainkd.checkpoints import load_weights_only
from brainkd.models.factory import create_model
from brainkd.pipeline import build_model, load_teacher_checkpoint
from job_helpers import fake_datamodule, model_config, run_in_process, tiny_overrides
from messy_data import make_plain_dataset

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "brainkd"


class SideEffect:
    """An object that creates a folder when it is unpickled, showing whether loading ran code from the file."""

    def __init__(self, folder: Path):
        self.folder = str(folder)

    def __reduce__(self):
        return (os.mkdir, (self.folder,))


def unsafe_checkpoint(path: Path) -> Path:
    """Save a brainkd-like checkpoint that also contains a SideEffect object."""
    model = create_model("plain_cnn", num_classes=4, image_size=16, channels=(4, 8))
    state_dict = {f"model.{key}": value for key, value in model.state_dict().items()}
    metadata = {"arch": "plain_cnn", "num_classes": 4, "in_chans": 1, "manifest_hash": "abc123"}
    torch.save({"state_dict": state_dict, "brainkd": metadata, "note": SideEffect(path.parent / "ran")}, path)
    return path


def test_unsafe_file_rejected_without_running_it(tmp_path):
    path = unsafe_checkpoint(tmp_path / "unsafe.ckpt")
    with pytest.raises(ValueError) as error:
        load_weights_only(path, "some.setting")
    assert f"rejected some.setting {path}" in str(error.value)
    assert "weights_only=True" in str(error.value)
    assert not (tmp_path / "ran").exists()


def test_truncated_file_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="is not a readable PyTorch file"):
        load_weights_only(path, "model.weights_path")


def test_unsafe_teacher_checkpoint_rejected(tmp_path):
    path = unsafe_checkpoint(tmp_path / "teacher.ckpt")
    with pytest.raises(ValueError, match=r"rejected distill\.teacher_checkpoint"):
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())
    assert not (tmp_path / "ran").exists()


def test_unsafe_local_weights_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"note": SideEffect(tmp_path / "ran")}, path)
    config = OmegaConf.merge(model_config(), {"weights_path": str(path)})
    with pytest.raises(ValueError, match=r"rejected model\.weights_path"):
        build_model(config, num_classes=4, image_size=16)
    assert not (tmp_path / "ran").exists()


def test_unsafe_timm_weights_rejected(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"note": SideEffect(tmp_path / "ran")}, path)
    with pytest.raises(ValueError, match=r"rejected model\.weights_path"):
        create_model("resnet10t", num_classes=4, image_size=16, weights_path=str(path))
    assert not (tmp_path / "ran").exists()


def test_unsafe_resume_checkpoint_rejected(tmp_path):
    root = make_plain_dataset(tmp_path / "dataset")
    path = unsafe_checkpoint(tmp_path / "resume.ckpt")
    overrides = [*tiny_overrides(root, tmp_path / "cache"), f"ckpt_path={path}"]
    with pytest.raises(ValueError, match=rf"rejected ckpt_path {re.escape(str(path))}: it contains objects"):
        run_in_process(overrides, tmp_path / "run")
    assert not (tmp_path / "ran").exists()


def test_every_torch_load_is_weights_only():
    calls = []
    for source in PACKAGE_DIR.rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", source.read_text()):
            calls.append((source.name, call))
    assert calls
    for name, call in calls:
        assert "weights_only=True" in call, (name, call)


def test_no_unpickling_readers_in_package():
    for source in PACKAGE_DIR.rglob("*.py"):
        text = source.read_text()
        assert "pickle.load" not in text, source
        assert "allow_pickle=True" not in text, source
        assert "weights_only=False" not in text, source
