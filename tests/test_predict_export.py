"""predict, export and explain on a small plain CNN checkpoint built from generated data."""

import csv
import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from brainkd import explain, export, predict
from brainkd.cli import Option, parse_options
from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.gradcam import default_target_layer, feature_map_size, gradcam_heatmaps
from brainkd.inference import load_checkpoint_model, prepare_file
from brainkd.models.factory import create_model
from brainkd.modules import TeacherModule
from brainkd.pipeline import build_model, model_metadata

IMAGE_SIZE = 16
MODEL_CFG = OmegaConf.create({"name": "plain_cnn", "in_chans": 1, "options": {"channels": [8, 16]}})


@pytest.fixture(scope="module")
def datamodule(generated_root, tmp_path_factory):
    module = BrainMRIDataModule(
        root=str(generated_root),
        cache_dir=str(tmp_path_factory.mktemp("predict-cache")),
        image_size=IMAGE_SIZE,
        batch_size=8,
        num_workers=0,
        val_fraction=0.25,
        preprocess_workers=1,
        preprocess={"denoise_strength": 5.0},
    )
    module.prepare_data()
    module.setup("fit")
    return module


def save_checkpoint(datamodule, path, role, seed):
    """Save an untrained plain CNN the way Lightning checkpoints brainkd modules."""
    torch.manual_seed(seed)
    model = build_model(MODEL_CFG, len(datamodule.class_names), IMAGE_SIZE)
    module = TeacherModule(model, list(datamodule.class_names), metadata=model_metadata(MODEL_CFG, role, datamodule))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(datamodule, tmp_path_factory):
    return save_checkpoint(datamodule, tmp_path_factory.mktemp("checkpoint") / "model.ckpt", "student", seed=0)


def test_inputs_match_training_tensors(datamodule, checkpoint):
    loaded = load_checkpoint_model(checkpoint)
    dataset = datamodule.dataset("test")
    for index, sample in enumerate(datamodule.samples("test")[:6]):
        model_input, _ = prepare_file(sample.path, loaded)
        assert torch.equal(model_input, dataset[index][0])


def test_checkpoint_keeps_preprocessing(datamodule, checkpoint):
    metadata = torch.load(checkpoint, weights_only=True)["brainkd"]
    assert metadata["preprocess"]["denoise_strength"] == 5.0
    assert metadata["preprocess"]["image_size"] == IMAGE_SIZE
    assert (metadata["mean"], metadata["std"]) == (datamodule.mean, datamodule.std)


def test_old_checkpoint_rejected(checkpoint, tmp_path):
    old = torch.load(checkpoint, weights_only=True)
    del old["brainkd"]["preprocess"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="preprocess"):
        load_checkpoint_model(tmp_path / "old.ckpt")


def test_predict_lists_bad_file(checkpoint, generated_root, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for source in sorted((generated_root / "Testing" / "glioma").glob("*.jpg"))[:2]:
        shutil.copy(source, folder / source.name)
    (folder / "broken.jpg").write_text("not an image")
    (folder / ".hidden.jpg").write_text("ignored")
    output = tmp_path / "predictions.csv"

    assert predict.main([f"checkpoint={checkpoint}", f"input={folder}", f"output={output}", "batch_size=1"]) == 0

    rows = {row["path"]: row for row in csv.DictReader(output.open())}
    assert len(rows) == 3
    broken = rows[str(folder / "broken.jpg")]
    assert broken["predicted_class"] == ""
    assert "Pillow" in broken["error"]
    for name in ("glioma_0000.jpg", "glioma_0001.jpg"):
        row = rows[str(folder / name)]
        assert row["error"] == ""
        assert row["predicted_class"] in {"glioma", "meningioma", "no_tumor", "pituitary"}
        probabilities = [float(value) for key, value in row.items() if key.startswith("probability_")]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_predict_writes_non_utf8_file_name(checkpoint, generated_root, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    source = sorted((generated_root / "Testing" / "glioma").glob("*.jpg"))[0]
    # Latin-1 "é" in a file name, as copied from an old archive; not valid UTF-8.
    shutil.copy(source, os.fsencode(folder) + b"/scan_\xe9.jpg")
    output = tmp_path / "predictions.csv"

    assert predict.main([f"checkpoint={checkpoint}", f"input={folder}", f"output={output}"]) == 0

    rows = list(csv.DictReader(output.open(encoding="utf-8")))
    assert [row["path"] for row in rows] == [str(folder / "scan_\\udce9.jpg")]
    assert rows[0]["predicted_class"] in {"glioma", "meningioma", "no_tumor", "pituitary"}


def test_predict_missing_input(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="input"):
        predict.main([f"checkpoint={checkpoint}", f"input={tmp_path / 'absent'}"])


def test_options_reject_unknown_key():
    with pytest.raises(SystemExit, match="unknown key 'colour'"):
        parse_options(["colour=red"], {"size": Option("side", default=1, parse=int)}, "usage")


def test_options_require_keys():
    with pytest.raises(SystemExit, match="missing checkpoint="):
        parse_options([], {"checkpoint": Option("file")}, "usage")


def test_onnx_export_matches_pytorch(checkpoint, generated_root, tmp_path, caplog):
    output = tmp_path / "model.onnx"
    caplog.set_level("INFO")
    argv = [f"checkpoint={checkpoint}", f"output={output}", f"images={generated_root / 'Testing'}", "num_images=6"]

    assert export.main(argv) == 0

    assert "passed" in caplog.text
    loaded = load_checkpoint_model(checkpoint)
    images = torch.stack([prepare_file(path, loaded)[0] for path in sorted((generated_root / "Testing").rglob("*.jpg"))[:5]])
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"images": images.numpy()})[0]
    with torch.no_grad():
        torch_logits = loaded.model(images).numpy()
    assert onnx_logits.shape == (5, 4)
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4


def test_onnx_metadata_has_classes(checkpoint, generated_root, tmp_path):
    output = tmp_path / "model.onnx"
    export.main([f"checkpoint={checkpoint}", f"output={output}", f"images={generated_root / 'Testing'}", "num_images=2"])
    properties = {entry.key: entry.value for entry in onnx.load(str(output)).metadata_props}
    assert json.loads(properties["brainkd_class_names"]) == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert json.loads(properties["brainkd_preprocess"])["image_size"] == IMAGE_SIZE


def test_export_rejects_unknown_format(checkpoint):
    with pytest.raises(ValueError, match="format='tflite'"):
        export.main([f"checkpoint={checkpoint}", "format=tflite"])


def test_target_layer_of_models():
    plain = create_model("plain_cnn", num_classes=4, image_size=IMAGE_SIZE, channels=[8, 16])
    assert default_target_layer(plain) is plain.features[-2]
    resnext = create_model("resnext26ts", num_classes=4, image_size=32)
    assert default_target_layer(resnext) is resnext.final_conv
    mlp = create_model("mlp", num_classes=4, image_size=IMAGE_SIZE, input_size=8, hidden=[8])
    with pytest.raises(ValueError, match="no convolution layer"):
        default_target_layer(mlp)


def test_gradcam_heatmap_shape():
    model = create_model("plain_cnn", num_classes=4, image_size=IMAGE_SIZE, channels=[8, 16])
    heatmaps = gradcam_heatmaps(model, torch.randn(3, 1, IMAGE_SIZE, IMAGE_SIZE), [0, 1, 2])
    assert heatmaps.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert heatmaps.min() >= 0.0
    assert heatmaps.max() <= 1.0 + 1e-6


def test_feature_map_size_of_plain_cnn():
    model = create_model("plain_cnn", num_classes=4, image_size=IMAGE_SIZE, channels=[8, 16])
    # The ReLU of the second block runs after one 2x2 pooling: 16 px becomes 8 px.
    assert feature_map_size(model, torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)) == (8, 8)


def test_explain_writes_side_by_side(datamodule, checkpoint, generated_root, tmp_path):
    run_dir = tmp_path / "run"
    teacher = save_checkpoint(datamodule, tmp_path / "teacher.ckpt", "teacher", seed=1)
    results = {
        "models": {"teacher": {"checkpoint": str(teacher)}, "student": {"checkpoint": str(checkpoint)}},
        "data": {"root": str(generated_root)},
    }
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(results))

    assert explain.main([f"run={run_dir}", "num_images=3"]) == 0

    with Image.open(run_dir / "explanations" / "gradcam.png") as image:
        assert image.format == "PNG"
        assert image.width > image.height / 2
