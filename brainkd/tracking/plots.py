"""PNG figures for evaluation reports and training runs.

Every figure is a ``matplotlib.figure.Figure`` drawn on its own Agg canvas, never through
pyplot, so plotting leaves the user's backend alone and no figure stays registered after
it is saved. Each function returns the path it wrote.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from brainkd.disk import OUTPUT_SPACE_HINT, write_error
from brainkd.evaluation import expected_calibration_error, one_vs_rest_auroc, reliability_bins, validate_probabilities

log = logging.getLogger(__name__)

DPI = 120
# CSVLogger columns that index the rows rather than hold a logged metric.
INDEX_COLUMNS = ("epoch", "step")


def format_prediction_caption(true_name: str, predicted_name: str, confidence: float) -> str:
    """Format an image caption such as ``true: glioma / pred: meningioma (0.83)``."""
    return f"true: {true_name} / pred: {predicted_name} ({confidence:.2f})"


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Draw the confusion matrix as counts and row-normalised (recall per true class), side by side.

    Rows of ``matrix`` are true classes and columns are predicted classes.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix must be square (C x C), got shape {counts.shape}")
    if len(class_names) != counts.shape[0]:
        raise ValueError(
            f"matrix is {counts.shape[0]} x {counts.shape[0]} but {len(class_names)} class_names were given"
        )
    if np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError(
            f"matrix must contain non-negative integer counts, got {counts.dtype} values "
            f"from {counts.min()} to {counts.max()}"
        )
    counts = counts.astype(np.int64)

    row_totals = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)

    panel_size = max(4.0, 0.9 * counts.shape[0] + 2.0)
    figure = _new_figure(2 * panel_size + 1.0, panel_size)
    count_axes, recall_axes = figure.subplots(1, 2)
    _draw_matrix(count_axes, counts, class_names, "counts", vmax=max(int(counts.max()), 1), text_format="d")
    _draw_matrix(recall_axes, recall, class_names, "row-normalised (recall)", vmax=1.0, text_format=".2f")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_roc_curves(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
) -> Path:
    """Draw one-vs-rest ROC curves, one per class, with each class's AUROC in the legend.

    A class without positives or without negatives in ``labels`` has no curve, and the
    legend gives the reason.
    """
    probs, labels = validate_probabilities(probs, labels)
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"probs has {probs.shape[1]} columns but {len(class_names)} class_names were given")
    aurocs = one_vs_rest_auroc(probs, labels)

    figure = _new_figure(6.0, 5.5)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for class_index, (name, auroc) in enumerate(zip(class_names, aurocs)):
        is_positive = labels == class_index
        if auroc is None:
            reason = "no positives" if not is_positive.any() else "no negatives"
            axes.plot([], [], linestyle="none", label=f"{name}: skipped, {reason} in labels")
            continue
        false_positive_rate, true_positive_rate, _ = roc_curve(is_positive, probs[:, class_index])
        axes.plot(false_positive_rate, true_positive_rate, label=f"{name} (AUROC {auroc:.3f})")

    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("ROC, one vs rest")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_reliability_diagram(
    probs: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    num_bins: int = 15,
) -> Path:
    """Draw accuracy against top-1 confidence per bin, with the diagonal and the ECE in the title.

    A second panel below shows how many samples fall into each confidence bin.
    """
    bins = reliability_bins(probs, labels, num_bins)
    ece = expected_calibration_error(probs, labels, num_bins)
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = 1.0 / num_bins
    filled = bins.count > 0

    figure = _new_figure(6.0, 7.0)
    reliability_axes, histogram_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    reliability_axes.bar(
        centers[filled], bins.accuracy[filled], width=width, edgecolor="black", linewidth=0.5, label="accuracy"
    )
    # The hatched bar spans from accuracy to mean confidence in either direction, so it
    # shows over-confidence above the accuracy bar and under-confidence inside it.
    accuracy = bins.accuracy[filled]
    confidence = bins.confidence[filled]
    reliability_axes.bar(
        centers[filled],
        np.abs(confidence - accuracy),
        bottom=np.minimum(confidence, accuracy),
        width=width,
        facecolor="none",
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    reliability_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    reliability_axes.set_xlim(0, 1)
    reliability_axes.set_ylim(0, 1)
    reliability_axes.set_ylabel("accuracy")
    reliability_axes.set_title(f"Reliability diagram (ECE = {ece:.4f}, {num_bins} bins)")
    reliability_axes.legend(loc="upper left", fontsize=8)

    histogram_axes.bar(centers, bins.count, width=width, color="tab:grey", edgecolor="black", linewidth=0.5)
    histogram_axes.set_xlabel("top-1 confidence")
    histogram_axes.set_ylabel("samples")
    return _save(figure, path)


def plot_training_curves(metrics_csv: str | Path, path: str | Path) -> Path:
    """Plot loss curves and validation metrics from a Lightning CSVLogger ``metrics.csv``.

    Columns whose name contains "loss" go to the first panel, other ``val/`` columns to
    the second. The x axis is the epoch column, or the step column when there is no
    epoch column. Values logged several times within one epoch (per-step logging) are
    averaged. A missing panel is left out, and with nothing to plot the figure shows a
    message instead.
    """
    metrics_csv = Path(metrics_csv)
    series, x_label = _read_metric_series(metrics_csv)
    loss_series = {name: points for name, points in series.items() if "loss" in name}
    val_series = {name: points for name, points in series.items() if name.startswith("val/") and "loss" not in name}
    panels = [(title, group) for title, group in (("loss", loss_series), ("validation metrics", val_series)) if group]

    if not panels:
        figure = _new_figure(6.0, 3.0)
        axes = figure.subplots()
        axes.axis("off")
        message = f"no loss or validation metric values found in\n{metrics_csv}"
        axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
        log.warning("Found no loss or validation metric values in %s, so the figure shows only a message", metrics_csv)
        return _save(figure, path)

    figure = _new_figure(6.0 * len(panels), 4.5)
    axes_row = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (title, group) in zip(axes_row, panels):
        for name in sorted(group):
            steps, values = group[name]
            axes.plot(steps, values, marker="o", markersize=3, label=name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel(x_label)
        axes.set_title(title)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_preprocessing_steps(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Draw a grid with one row per image and one column per preprocessing step.

    Each row is a dict with a ``"title"`` and ``"steps"``, an ordered mapping from step
    name (original, mask, denoised, ...) to a 2-D gray image or an H x W x 3 colour image.
    """
    if len(rows) == 0:
        raise ValueError("rows is empty. Pass at least one dict with 'title' and 'steps'")
    for row_index, row in enumerate(rows):
        missing = {"title", "steps"} - set(row)
        if missing:
            raise ValueError(f"rows[{row_index}] is missing the keys {sorted(missing)}")
        if len(row["steps"]) == 0:
            raise ValueError(f"rows[{row_index}] ({row['title']!r}) has no steps")

    num_columns = max(len(row["steps"]) for row in rows)
    figure = _new_figure(2.4 * num_columns, 2.6 * len(rows))
    grid = figure.subplots(len(rows), num_columns, squeeze=False)
    for row_axes, row in zip(grid, rows):
        for axes in row_axes[len(row["steps"]) :]:
            axes.axis("off")
        for axes, (step_name, image) in zip(row_axes, row["steps"].items()):
            _show_image(axes, image, f"{row['title']} / {step_name}")
            axes.set_title(step_name, fontsize=9)
        row_axes[0].set_ylabel(row["title"], fontsize=9)
    return _save(figure, path)


def plot_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    ncols: int = 4,
) -> Path:
    """Draw images in a grid of ``ncols`` columns, each captioned with its title.

    ``format_prediction_caption`` builds the usual "true / pred (confidence)" caption.
    """
    if len(images) != len(titles):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    if len(images) == 0:
        raise ValueError("images is empty. Pass at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")

    num_columns = min(ncols, len(images))
    num_rows = math.ceil(len(images) / num_columns)
    figure = _new_figure(2.8 * num_columns, 3.0 * num_rows)
    grid = figure.subplots(num_rows, num_columns, squeeze=False)
    for axes in grid.flat[len(images) :]:
        axes.axis("off")
    for index, (axes, image, title) in enumerate(zip(grid.flat, images, titles)):
        _show_image(axes, image, f"images[{index}]")
        axes.set_title(title, fontsize=9)
    return _save(figure, path)


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    except OSError as error:
        raise write_error(error, f"plot {path}", path, OUTPUT_SPACE_HINT) from error
    log.debug("Wrote %s", path)
    return path


def _draw_matrix(
    axes: Axes,
    values: np.ndarray,
    class_names: Sequence[str],
    title: str,
    vmax: float,
    text_format: str,
) -> None:
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)

    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)

    # Dark cells get white text so the number stays readable.
    for true_index, predicted_index in np.ndindex(values.shape):
        value = values[true_index, predicted_index]
        color = "white" if value > vmax / 2 else "black"
        axes.text(predicted_index, true_index, format(value, text_format), ha="center", va="center", color=color)


def _show_image(axes: Axes, image: np.ndarray, name: str) -> None:
    pixels = np.asarray(image)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.float32)
    if pixels.ndim == 2:
        axes.imshow(pixels, cmap="gray")
    elif pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        axes.imshow(pixels)
    else:
        raise ValueError(f"{name} must be a 2-D gray or H x W x 3/4 colour image, got shape {pixels.shape}")
    axes.set_xticks([])
    axes.set_yticks([])


def _read_metric_series(metrics_csv: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Read each metric column of a CSVLogger file as arrays of x values and the mean value at each x.

    Return the series keyed by column name, and the name of the x column ("epoch", "step" or "row").
    """
    with metrics_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)

    x_column = next((name for name in INDEX_COLUMNS if name in columns), None)
    values_by_x: dict[str, dict[float, list[float]]] = {}
    for row_index, row in enumerate(rows):
        x = _parse_value(row.get(x_column)) if x_column else float(row_index)
        if x is None:
            continue
        for name in columns:
            if name in INDEX_COLUMNS:
                continue
            value = _parse_value(row.get(name))
            if value is not None:
                values_by_x.setdefault(name, {}).setdefault(x, []).append(value)

    series = {}
    for name, by_x in values_by_x.items():
        xs = sorted(by_x)
        series[name] = (np.array(xs), np.array([np.mean(by_x[x]) for x in xs]))
    return series, x_column or "row"


def _parse_value(text: str | None) -> float | None:
    """Parse one CSV cell as a finite float; empty, non-numeric and NaN cells give None."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
