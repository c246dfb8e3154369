"""Write results.json atomically and format the side-by-side comparison table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from brainkd.atomic import atomic_open

TABLE_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "loss")


def write_json(path: str | Path, payload: Any) -> Path:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    with atomic_open(path, "w") as stream:
        json.dump(payload, stream, indent=2, sort_keys=False, default=str)
        stream.write("\n")
    return path


def format_comparison(results: dict[str, Any]) -> str:
    """Render the test metrics of every model of a job as a text table, one column per model."""
    models = results["models"]
    roles = list(models)
    rows: list[tuple[str, list[str]]] = []
    for metric in TABLE_METRICS:
        rows.append((f"test {metric}", [_number(models[r]["test"].get(metric)) for r in roles]))
    for metric in ("accuracy", "f1_macro"):
        # Testing/ images with no duplicate in Training/; absent from results written before it existed.
        values = [(models[r].get("test_twin_free") or {}).get(metric) for r in roles]
        if any(value is not None for value in values):
            rows.append((f"twin-free {metric}", [_number(value) for value in values]))

    class_names = list(next(iter(models.values()))["test"].get("recall_per_class", {}))
    for class_name in class_names:
        rows.append((f"test recall {class_name}", [_number(models[r]["test"]["recall_per_class"][class_name]) for r in roles]))
    rows.append(("parameters", [f"{models[r]['parameters']:,}" for r in roles]))
    rows.append(("architecture", [models[r]["arch"] for r in roles]))

    header = ["", *roles]
    table = [header, *[[name, *values] for name, values in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
