"""Write the fold report: CSV files of folds, summaries, paired differences and jobs, and Markdown."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from brainkd.comparison import fold_table, markdown_table
from brainkd.fold_statistics import CONFIDENCE, Estimate, format_estimate
from brainkd.reporting import METRICS, SUBSETS, FoldRow, Job, ModelSummary, PairedComparison

METRIC_TITLES = {"accuracy": "accuracy", "precision_macro": "precision", "recall_macro": "recall", "f1_macro": "F1", "loss": "loss"}
SUBSET_TITLES = {
    "test": "all of Testing/",
    "twin_free": "twin-free Testing/ images (no duplicate in Training/)",
}
ESTIMATE_FIELDS = ("mean", "std", "ci_low", "ci_high")
# Validation metrics shown per held-out cross-validation fold, with their mean ± std.
HELD_OUT_METRICS = ("accuracy", "f1_macro")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write dicts as CSV rows; the columns are the keys in order of first appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _identity_fields(model: FoldRow | ModelSummary) -> dict[str, Any]:
    """Return the CSV columns that name a model and its setting; temperature and alpha only for distill jobs."""
    distill = model.task == "distill"
    return {
        "task": model.task,
        "role": model.role,
        "arch": model.arch,
        "setting": model.setting,
        "temperature": model.temperature if distill else None,
        "alpha": model.alpha if distill else None,
    }


def fold_records(rows: list[FoldRow]) -> list[dict[str, Any]]:
    """Return one CSV record per model and fold: identity, setting, metrics and job folder."""
    return [
        {
            **_identity_fields(row),
            "fold": row.fold,
            "num_folds": row.num_folds,
            **row.metrics,
            "job": str(row.job.path),
        }
        for row in rows
    ]


def summary_records(summaries: list[ModelSummary]) -> list[dict[str, Any]]:
    """Return one CSV record per model and setting: folds, then mean, std and interval per metric."""
    records = []
    for summary in summaries:
        record = {
            **_identity_fields(summary),
            "folds": len(summary.rows),
            "fold_list": " ".join(str(row.fold) for row in summary.rows),
        }
        for column, value in summary.estimates.items():
            record.update(_estimate_fields(column, value))
        records.append(record)
    return records


def paired_records(comparisons: list[PairedComparison]) -> list[dict[str, Any]]:
    """Return one CSV record per comparison: the paired differences (student minus control)."""
    records = []
    for comparison in comparisons:
        record = {
            "arch": comparison.student.arch,
            "student_setting": comparison.student.setting,
            "control_setting": comparison.control.setting,
            "pairs": comparison.pairs,
        }
        for column, value in comparison.estimates.items():
            record.update(_estimate_fields(f"difference_{column}", value))
        records.append(record)
    return records


def job_records(jobs: list[Job]) -> list[dict[str, Any]]:
    """Return one CSV record per job folder with its status and, for a job without results, the reason."""
    return [
        {"job": str(job.path), "status": "completed" if job.results is not None else "no results", "reason": job.problem or ""}
        for job in jobs
    ]


def render_markdown(
    sources: Iterable[Path],
    jobs: list[Job],
    summaries: list[ModelSummary],
    comparisons: list[PairedComparison],
    rows: list[FoldRow],
    notes: list[str],
) -> str:
    """Render the report: summaries per test subset, the KD comparison and grid, folds and problems."""
    completed = sum(job.results is not None for job in jobs)
    lines = [
        "# Cross-validation report",
        "",
        f"Jobs read from {', '.join(str(source) for source in sources)}: {len(jobs)}, "
        f"{completed} with results and {len(jobs) - completed} without.",
        f"Cells show the mean over folds ± the half-width of its {CONFIDENCE:.0%} confidence interval "
        "(t-distribution, folds - 1 degrees of freedom); a single fold shows its value alone.",
    ]
    for prefix, title in SUBSET_TITLES.items():
        lines += ["", f"## Test metrics: {title}", "", _summary_table(summaries, prefix)]

    if comparisons:
        lines += ["", "## Distillation against the student trained without KD", "",
                  "Differences student minus student_only, paired by fold (same training files).", "",
                  _paired_table(comparisons)]
    grid = [s for s in summaries if s.task == "distill" and s.role == "student"]
    if len({(s.temperature, s.alpha) for s in grid}) > 1:
        lines += ["", "## Distillation settings (temperature, alpha)", "", _grid_table(grid)]

    for metric in HELD_OUT_METRICS:
        table = _held_out_table(summaries, metric)
        if table is not None:
            lines += ["", f"## Cross-validation: {METRIC_TITLES[metric]} on each held-out fold", "",
                      "Validation metrics after the last epoch; mean ± sample standard deviation over folds.", "",
                      table]

    lines += ["", "## Per fold", "", _fold_table(rows)]
    problems = [job for job in jobs if job.results is None]
    if problems:
        lines += ["", "## Jobs without results (not averaged)", "",
                  markdown_table(["job", "reason"], [[str(job.path), job.problem or ""] for job in problems])]
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _summary_table(summaries: list[ModelSummary], prefix: str) -> str:
    header = ["model", "setting", "folds", *(METRIC_TITLES[name] for name in METRICS)]
    body = [
        [s.label, s.setting or "-", str(len(s.rows)),
         *(format_estimate(s.estimates.get(f"{prefix}_{name}", Estimate(0, None, None, None, None))) for name in METRICS)]
        for s in summaries
    ]
    return markdown_table(header, body)


def _paired_table(comparisons: list[PairedComparison]) -> str:
    shown_columns = [f"{prefix}_{name}" for prefix in SUBSETS for name in ("accuracy", "f1_macro")]
    header = ["student", "setting", "control setting", "pairs", *(f"Δ {column.replace('_', ' ')}" for column in shown_columns)]
    body = [
        [c.student.arch, c.student.setting or "-", c.control.setting or "-", str(c.pairs),
         *(format_estimate(c.estimates[column]) for column in shown_columns)]
        for c in comparisons
    ]
    return markdown_table(header, body)


def _grid_table(grid: list[ModelSummary]) -> str:
    shown_columns = [f"{prefix}_{name}" for prefix in SUBSETS for name in ("f1_macro", "accuracy")]
    header = ["temperature", "alpha", "setting", "folds", *(column.replace("_", " ") for column in shown_columns)]
    ordered = sorted(grid, key=lambda s: (s.temperature is None, s.temperature or 0, s.alpha is None, s.alpha or 0))
    body = [
        [str(s.temperature), str(s.alpha), s.setting or "-", str(len(s.rows)),
         *(format_estimate(s.estimates[column]) for column in shown_columns)]
        for s in ordered
    ]
    return markdown_table(header, body)


def _held_out_table(summaries: list[ModelSummary], metric: str) -> str | None:
    """Tabulate a validation metric per model and held-out fold, for jobs that set ``data.fold``.

    A job with ``data.fold`` null validates on a hold-out of Training/ and is left out.
    """
    values_by_model = {}
    for summary in summaries:
        values = {}
        for row in summary.rows:
            if (row.job.results.get("config") or {}).get("data", {}).get("fold") is None:
                continue
            validation = row.job.results["models"][row.role].get("val", {})
            values[row.fold] = validation.get(f"val/{metric}")
        label = f"{summary.label} {summary.setting}" if summary.setting else summary.label
        values_by_model[label] = values
    return fold_table(values_by_model)


def _fold_table(rows: list[FoldRow]) -> str:
    shown_columns = [f"{prefix}_{name}" for prefix in SUBSETS for name in ("accuracy", "f1_macro")]
    header = ["model", "setting", "fold", *(column.replace("_", " ") for column in shown_columns), "job"]
    body = [
        [f"{row.arch} ({row.role})", row.setting or "-", str(row.fold),
         *(_number(row.metrics.get(column)) for column in shown_columns), str(row.job.path)]
        for row in rows
    ]
    return markdown_table(header, body)


def _estimate_fields(column: str, value: Estimate) -> dict[str, float | None]:
    return {f"{column}_{name}": getattr(value, name) for name in ESTIMATE_FIELDS}


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
