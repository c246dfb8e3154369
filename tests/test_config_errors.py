"""Config mistakes raise errors that name the key, the value and the accepted values."""

from __future__ import annotations

import pytest
import torch

from brainkd.models.factory import create_model
from brainkd.pipeline import build_model, load_teacher_checkpoint
from job_helpers import fake_datamodule, model_config


def save_teacher(
    path, arch="plain_cnn", num_classes=4, in_chans=1, channels=(4, 8), manifest_hash="abc123", image_size=None
):
    model = create_model("plain_cnn", num_classes=num_classes, in_chans=in_chans, image_size=16, channels=channels)
    state_dict = {f"model.{key}": value for key, value in model.state_dict().items()}
    metadata = {
        "arch": arch, "num_classes": num_classes, "in_chans": in_chans, "options": {"channels": list(channels)},
        "manifest_hash": manifest_hash, "fold": 0, "num_folds": 4,
    }
    if image_size is not None:
        metadata["image_size"] = image_size
    torch.save({"state_dict": state_dict, "brainkd": metadata}, path)
    return path


def test_unknown_model_name_names_key():
    with pytest.raises(ValueError) as error:
        build_model(model_config("plain_cn"), num_classes=4, image_size=16)
    message = str(error.value)
    assert "model.name='plain_cn'" in message
    assert "plain_cnn" in message
    assert "timm.list_models()" in message


def test_unknown_student_name_names_student_key():
    with pytest.raises(ValueError, match=r"student\.name='resnext9000'"):
        build_model(model_config("resnext9000"), num_classes=4, image_size=16, config_key="student")


def test_unknown_model_option_names_key():
    with pytest.raises(ValueError, match=r"model\.options=\{'kernels': 3\}"):
        build_model(model_config(kernels=3), num_classes=4, image_size=16)


def test_image_size_too_small_names_key():
    config = model_config(channels=[4, 8, 16, 32])
    with pytest.raises(ValueError) as error:
        build_model(config, num_classes=4, image_size=8)
    assert "data.image_size=8" in str(error.value)
    assert "image_size >= 16" in str(error.value)


def test_teacher_of_other_architecture_rejected(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt", arch="mlp")
    with pytest.raises(ValueError) as error:
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())
    message = str(error.value)
    assert "distill.teacher_checkpoint" in message
    assert "arch='mlp'" in message
    assert "model.name is 'plain_cnn'" in message


def test_teacher_of_other_class_count_rejected(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt", num_classes=3)
    with pytest.raises(ValueError) as error:
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())
    assert "num_classes=3" in str(error.value)
    assert "the number of classes is 4" in str(error.value)


def test_teacher_of_other_channels_rejected(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt", in_chans=3)
    with pytest.raises(ValueError, match=r"in_chans=3, but model\.in_chans is 1"):
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())


def test_teacher_of_other_options_rejected(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt", channels=(8, 16))
    with pytest.raises(ValueError) as error:
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())
    message = str(error.value)
    assert "do not fit model.name='plain_cnn'" in message
    assert "model.options={'channels': [4, 8]}" in message
    assert "'channels': [8, 16]" in message


def test_teacher_of_other_fold_rejected(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt", manifest_hash="other")
    with pytest.raises(ValueError, match="train a teacher on the same fold"):
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())


def test_teacher_of_other_image_size_rejected(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt", image_size=64)
    with pytest.raises(ValueError, match="Change data.image_size to match"):
        load_teacher_checkpoint(str(path), model_config(), fake_datamodule())


def test_matching_teacher_loads(tmp_path):
    path = save_teacher(tmp_path / "teacher.ckpt")
    model = load_teacher_checkpoint(str(path), model_config(), fake_datamodule())
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 4)


def test_missing_teacher_checkpoint_names_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="distill.teacher_checkpoint"):
        load_teacher_checkpoint(str(tmp_path / "absent.ckpt"), model_config(), fake_datamodule())
