"""Markdown tables for comparing models, and the wide per-fold table with its mean ± std."""

from __future__ import annotations

import statistics
from collections.abc import Mapping


def mean_and_std(values: list[float]) -> str:
    """Format values as ``mean ± sample standard deviation``, a single value alone, or ``n/a``."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def fold_table(values_by_model: Mapping[str, Mapping[int, float | None]]) -> str | None:
    """Tabulate one metric with a row per model and a column per fold, then its mean ± std.

    ``values_by_model`` maps a row label to ``{fold: value}``. A fold that a model has no
    value for shows ``n/a`` and is left out of its mean. Returns None when no model has a fold.
    """
    folds = sorted({fold for values in values_by_model.values() for fold in values})
    if not folds:
        return None
    rows = []
    for label, values in values_by_model.items():
        if not values:
            continue
        defined = [value for value in values.values() if value is not None]
        rows.append([label, *(_number(values.get(fold)) for fold in folds), mean_and_std(defined)])
    header = ["model", *(f"fold {fold}" for fold in folds), "mean ± std"]
    return markdown_table(header, rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Format a header and rows of cells as a Markdown table with aligned columns."""
    table = [header, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
