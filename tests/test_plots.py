from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from brainkd.disk import WriteFailed
from brainkd.tracking.plots import (
    format_prediction_caption,
    plot_confusion_matrix,
    plot_image_grid,
    plot_preprocessing_steps,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
)

CLASS_NAMES = ["glioma", "meningioma", "notumor", "pituitary"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_WIDTH = 300


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(path)


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 4))
    labels = rng.integers(0, 3, size=40)
    logits[np.arange(40), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def test_confusion_matrix_png(tmp_path):
    matrix = np.array([[5, 1, 0, 0], [2, 6, 1, 0], [0, 0, 8, 0], [0, 0, 0, 0]])

    path = plot_confusion_matrix(matrix, CLASS_NAMES, tmp_path / "cm.png", title="fold 0")
    image = read_png(path)

    assert path == tmp_path / "cm.png"
    assert image.shape[1] >= MIN_WIDTH


def test_confusion_matrix_not_square(tmp_path):
    with pytest.raises(ValueError, match=r"square \(C x C\), got shape \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "cm.png")


def test_roc_skips_absent_class(tmp_path, predictions):
    # The fixture draws labels from classes 0 to 2 only, so pituitary has no positives.
    probs, labels = predictions

    image = read_png(plot_roc_curves(probs, labels, CLASS_NAMES, tmp_path / "roc.png"))

    assert image.shape[1] >= MIN_WIDTH


def test_reliability_diagram_png(tmp_path, predictions):
    probs, labels = predictions

    image = read_png(plot_reliability_diagram(probs, labels, tmp_path / "reliability.png", num_bins=10))

    assert image.shape[1] >= MIN_WIDTH


def test_training_curves_sparse_csv(tmp_path):
    metrics_csv = tmp_path / "metrics.csv"
    metrics_csv.write_text(
        "epoch,step,train/loss,val/loss,val/accuracy,val/f1_macro\n"
        "0,9,1.20,,,\n"
        "0,9,,1.10,0.55,0.50\n"
        "1,19,0.90,,,\n"
        "1,19,,0.95,0.65,0.61\n"
        "2,29,0.70,,,\n"
        "2,29,,0.90,0.70,nan\n"
    )

    image = read_png(plot_training_curves(metrics_csv, tmp_path / "curves.png"))

    assert image.shape[1] >= MIN_WIDTH


def test_training_curves_loss_only(tmp_path):
    metrics_csv = tmp_path / "metrics.csv"
    metrics_csv.write_text("step,train/loss_step\n0,2.0\n1,1.5\n2,1.1\n")

    image = read_png(plot_training_curves(metrics_csv, tmp_path / "curves.png"))

    assert image.shape[1] >= MIN_WIDTH


def test_training_curves_nothing_plottable(tmp_path):
    metrics_csv = tmp_path / "metrics.csv"
    metrics_csv.write_text("epoch,step,lr-Adam\n0,0,0.001\n")

    image = read_png(plot_training_curves(metrics_csv, tmp_path / "curves.png"))

    assert image.shape[1] >= MIN_WIDTH


def test_preprocessing_steps_grid(tmp_path):
    original = np.arange(64 * 48, dtype=np.uint8).reshape(64, 48)
    rows = [
        {
            "title": "Tr-gl_0001.jpg",
            "steps": {
                "original": original,
                "mask": original > 100,
                "denoised": original.astype(np.float32),
                "normalised": original / 255.0,
            },
        },
        {"title": "Tr-no_0002.jpg", "steps": {"original": original, "mask": original > 50}},
    ]

    image = read_png(plot_preprocessing_steps(rows, tmp_path / "nested" / "steps.png"))

    assert image.shape[1] >= MIN_WIDTH


def test_preprocessing_steps_bad_image(tmp_path):
    rows = [{"title": "scan", "steps": {"original": np.zeros(5)}}]

    with pytest.raises(ValueError, match=r"scan / original must be a 2-D"):
        plot_preprocessing_steps(rows, tmp_path / "steps.png")


def test_image_grid_captions(tmp_path):
    images = [np.full((32, 32), value, dtype=np.uint8) for value in (0, 80, 160, 240, 255)]
    titles = [format_prediction_caption("glioma", "meningioma", 0.83)] * 5

    image = read_png(plot_image_grid(images, titles, tmp_path / "grid.png", ncols=4))

    assert image.shape[1] >= MIN_WIDTH


def test_image_grid_length_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plot_image_grid([np.zeros((4, 4))] * 2, ["one"], tmp_path / "grid.png")


def test_prediction_caption_format():
    assert format_prediction_caption("glioma", "meningioma", 0.834) == "true: glioma / pred: meningioma (0.83)"


def test_backend_unchanged(tmp_path):
    backend = matplotlib.get_backend()

    plot_image_grid([np.zeros((8, 8))], ["blank"], tmp_path / "grid.png")

    assert matplotlib.get_backend() == backend


def test_unwritable_plot_folder_names_file(tmp_path):
    (tmp_path / "plots").write_text("a file where the plot folder should be")
    path = tmp_path / "plots" / "cm.png"
    with pytest.raises(WriteFailed) as error:
        plot_confusion_matrix(np.eye(4, dtype=int), CLASS_NAMES, path)
    message = str(error.value)
    assert message.startswith(f"could not write the plot {path}: File exists, with ")
    assert message.endswith("Free space there, or set hydra.run.dir to a folder on another disk.")
