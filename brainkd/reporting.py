"""Collect the jobs of multiruns and summarise each model's test metrics over folds.

A job is a folder with ``results.json`` (completed), ``failed.json`` (failed) or Hydra's
``.hydra/overrides.yaml``. Jobs without results are kept with the reason and never averaged.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainkd.failures import FAILED_FILE
from brainkd.fold_statistics import Estimate, estimate, paired_differences

RESULTS_FILE = "results.json"
METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "loss")
# Column prefix in the report, and the key of a model's metrics in results.json.
SUBSETS = {"test": "test", "twin_free": "test_twin_free"}
# Overrides that set where or how a job ran rather than what it trained, so they never split a setting.
BOOKKEEPING_KEYS = frozenset(
    {"ckpt_path", "continue_on_error", "name", "group", "tags", "data.cache_dir", "data.num_workers", "data.preprocess_workers"}
)
CONTROL_ROLE = "student_only"
# Table order of the roles: the distilled pair, the control without KD, then the baselines.
ROLE_ORDER = ("teacher", "student", CONTROL_ROLE, "baseline")


@dataclass
class Job:
    """One job folder: its results, its command-line overrides, or why it has no results."""

    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class FoldRow:
    """The test metrics of one model of one job; ``metrics`` maps report columns to values."""

    job: Job
    task: str
    role: str
    arch: str
    fold: int | None
    num_folds: int | None
    manifest_hash: str | None
    temperature: float | None
    alpha: float | None
    metrics: dict[str, float | None]
    setting: str = ""

    @property
    def model_key(self) -> tuple[str, str, str, str]:
        return (self.task, self.role, self.arch, self.setting)


@dataclass
class ModelSummary:
    """One model in one setting: its folds and an estimate per metric column."""

    task: str
    role: str
    arch: str
    setting: str
    temperature: float | None
    alpha: float | None
    rows: list[FoldRow]
    estimates: dict[str, Estimate]

    @property
    def label(self) -> str:
        return f"{self.arch} ({self.role})"


@dataclass
class PairedComparison:
    """Distilled student minus the same architecture trained without KD, fold by fold."""

    student: ModelSummary
    control: ModelSummary
    pairs: int
    estimates: dict[str, Estimate]


def find_jobs(roots: Iterable[Path]) -> list[Job]:
    """Find and read the job folders under each root; a root that is a job folder counts as one."""
    job_dirs: set[Path] = set()
    for root in roots:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"{root} is not a folder; give the folder of a multirun (or of one run)")
        for folder, subfolders, files in os.walk(root):
            if RESULTS_FILE in files or FAILED_FILE in files or (Path(folder) / ".hydra" / "overrides.yaml").is_file():
                job_dirs.add(Path(folder))
                subfolders.clear()
            else:
                subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    return [read_job(path) for path in sorted(job_dirs, key=_natural_key)]


def read_job(path: Path) -> Job:
    """Read a job folder's results, or record why it has none."""
    job = Job(path, overrides=_read_overrides(path))
    results_file = path / RESULTS_FILE
    failure_file = path / FAILED_FILE
    if results_file.is_file():
        try:
            job.results = json.loads(results_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            job.problem = f"{RESULTS_FILE} cannot be read: {error}"
        else:
            status = job.results.get("status", "completed")
            if status != "completed":
                job.problem, job.results = f"{RESULTS_FILE} has status {status!r}", None
    elif failure_file.is_file():
        job.problem = _failure_reason(failure_file)
    else:
        job.problem = f"no {RESULTS_FILE} and no {FAILED_FILE}: the job was killed or is still running"
    return job


def build_rows(jobs: Iterable[Job]) -> list[FoldRow]:
    """Return one row per model of every completed job, with its setting label assigned."""
    rows = []
    for job in jobs:
        if job.results is None:
            continue
        data = job.results.get("data") or {}
        distill = job.results.get("distill") or {}
        for entry in job.results["models"].values():
            rows.append(
                FoldRow(
                    job=job,
                    task=job.results.get("task", ""),
                    role=entry["role"],
                    arch=entry["arch"],
                    fold=data.get("fold"),
                    num_folds=data.get("num_folds"),
                    manifest_hash=data.get("manifest_hash"),
                    temperature=distill.get("temperature"),
                    alpha=distill.get("alpha"),
                    metrics=_metric_columns(entry),
                )
            )
    _assign_settings(rows)
    return rows


def drop_repeated_folds(rows: list[FoldRow]) -> tuple[list[FoldRow], list[str]]:
    """Keep the first row of each model, setting and fold; return the kept rows and a note per dropped one."""
    first_by_key: dict[tuple, FoldRow] = {}
    notes = []
    for row in rows:
        key = (*row.model_key, row.fold)
        if key in first_by_key:
            notes.append(
                f"{row.job.path} repeats fold {row.fold} of {row.arch} ({row.role}) {row.setting or ''}".rstrip()
                + f" already reported by {first_by_key[key].job.path}; left out"
            )
            continue
        first_by_key[key] = row
    return list(first_by_key.values()), notes


def summarize_models(rows: list[FoldRow]) -> list[ModelSummary]:
    """Estimate every metric column of each model and setting over its folds, in table order."""
    groups: dict[tuple, list[FoldRow]] = defaultdict(list)
    for row in rows:
        groups[row.model_key].append(row)

    summaries = []
    for (task, role, arch, setting), model_rows in groups.items():
        model_rows = sorted(model_rows, key=lambda row: (row.fold is None, row.fold or 0))
        columns = [column for column in model_rows[0].metrics if not column.endswith("_n")]
        summaries.append(
            ModelSummary(
                task=task,
                role=role,
                arch=arch,
                setting=setting,
                temperature=_common_value(row.temperature for row in model_rows),
                alpha=_common_value(row.alpha for row in model_rows),
                rows=model_rows,
                estimates={column: estimate([row.metrics.get(column) for row in model_rows]) for column in columns},
            )
        )

    def order(summary: ModelSummary) -> tuple:
        role = ROLE_ORDER.index(summary.role) if summary.role in ROLE_ORDER else len(ROLE_ORDER)
        return (role, summary.arch, _natural_key(summary.setting))

    return sorted(summaries, key=order)


def compare_with_control(summaries: list[ModelSummary]) -> list[PairedComparison]:
    """Pair each distilled student with each ``student_only`` model of its architecture.

    Folds pair when both jobs trained on the same files (fold number and manifest hash).
    """
    comparisons = []
    students = [s for s in summaries if s.task == "distill" and s.role == "student"]
    for student in students:
        for control in (s for s in summaries if s.role == CONTROL_ROLE and s.arch == student.arch):
            student_by_fold = {(row.fold, row.manifest_hash): row.metrics for row in student.rows}
            control_by_fold = {(row.fold, row.manifest_hash): row.metrics for row in control.rows}
            pairs = len(set(student_by_fold) & set(control_by_fold))
            if pairs == 0:
                continue
            estimates = {
                column: estimate(
                    paired_differences(
                        {key: metrics.get(column) for key, metrics in student_by_fold.items()},
                        {key: metrics.get(column) for key, metrics in control_by_fold.items()},
                    )
                )
                for column in student.estimates
            }
            comparisons.append(PairedComparison(student, control, pairs, estimates))
    return comparisons


def _assign_settings(rows: list[FoldRow]) -> None:
    """Label each row with the overrides that tell apart jobs of the same model on the same fold.

    An override that changes only from fold to fold (a per-fold teacher checkpoint, say)
    is not part of the setting, and neither is ``data.fold`` itself.
    """
    by_model: dict[tuple[str, str, str], list[FoldRow]] = defaultdict(list)
    for row in rows:
        by_model[(row.task, row.role, row.arch)].append(row)

    for model_rows in by_model.values():
        by_fold: dict[Any, list[FoldRow]] = defaultdict(list)
        for row in model_rows:
            by_fold[row.fold].append(row)
        keys = {key for row in model_rows for key in row.job.overrides} - BOOKKEEPING_KEYS - {"data.fold"}
        varying = sorted(
            key
            for key in keys
            if any(len({row.job.overrides.get(key) for row in fold_rows}) > 1 for fold_rows in by_fold.values())
        )
        for row in model_rows:
            row.setting = ", ".join(f"{key}={row.job.overrides.get(key, '(config default)')}" for key in varying)


def _metric_columns(entry: dict[str, Any]) -> dict[str, float | None]:
    columns: dict[str, float | None] = {}
    for prefix, key in SUBSETS.items():
        metrics = entry.get(key) or {}
        columns[f"{prefix}_n"] = metrics.get("n")
        for name in METRICS:
            columns[f"{prefix}_{name}"] = metrics.get(name)
        for class_name, recall in (metrics.get("recall_per_class") or {}).items():
            columns[f"{prefix}_recall_{class_name}"] = recall
    return columns


def _read_overrides(path: Path) -> dict[str, str]:
    """Return Hydra's task overrides of a job as key -> value, with ``+``/``~`` prefixes removed."""
    overrides_file = path / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        return {}
    listed = yaml.safe_load(overrides_file.read_text()) or []
    overrides = {}
    for override in listed:
        key, _, value = str(override).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def _failure_reason(failure_file: Path) -> str:
    try:
        record = json.loads(failure_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"failed ({FAILED_FILE} cannot be read: {error})"
    lines = str(record.get("message", "")).strip().splitlines()
    return f"failed: {record.get('error_type', 'error')}: {lines[0] if lines else '(no message)'}"


def _common_value(values: Iterable[Any]) -> Any:
    """Return the value all items share, or None when they differ."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _natural_key(text: Path | str) -> list:
    """Sort key that orders ``multirun/10`` after ``multirun/9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]
