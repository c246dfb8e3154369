"""The fold report: statistics, job discovery, settings, pairing, and a real multirun end to end."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainkd import reporting
from brainkd.data.synthetic import make_synthetic_dataset
from brainkd.fold_statistics import estimate, paired_differences
from brainkd.report import build_report
from job_helpers import QUICK_CPU_OVERRIDES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Two-sided 95% quantile of Student's t with 2 degrees of freedom.
T_975_2_DOF = 4.302652729911275


def test_estimate_t_interval():
    value = estimate([0.8, 0.9, 1.0])
    half_width = T_975_2_DOF * 0.1 / math.sqrt(3)
    assert value.mean == pytest.approx(0.9)
    assert value.std == pytest.approx(0.1)
    assert value.ci_low == pytest.approx(0.9 - half_width)
    assert value.ci_high == pytest.approx(0.9 + half_width)


def test_estimate_one_fold_no_interval():
    value = estimate([0.7])
    assert value.mean == 0.7
    assert value.ci_low is None


def test_estimate_skips_missing_values():
    value = estimate([0.5, None, float("nan"), 0.7])
    assert value.n == 2
    assert value.mean == pytest.approx(0.6)


def test_paired_differences_use_shared_keys():
    assert paired_differences({0: 0.9, 1: 0.8, 2: 0.5}, {0: 0.7, 1: None}) == [pytest.approx(0.2), None]


def metrics(f1: float, n: int = 10) -> dict:
    return {"n": n, "accuracy": f1, "precision_macro": f1, "recall_macro": f1, "f1_macro": f1, "loss": 1 - f1}


def write_job(
    path: Path,
    task: str,
    fold: int,
    models: dict[str, tuple[str, float]],
    overrides: list[str],
    temperature: float = 4.0,
) -> None:
    """Write a job folder as brainkd.run leaves it: results.json and .hydra/overrides.yaml."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"data.fold={fold}"]))
    results = {
        "task": task,
        "status": "completed",
        "data": {"fold": fold, "num_folds": 3, "manifest_hash": f"fold{fold}"},
        "models": {
            role: {"role": role, "arch": arch, "test": metrics(f1), "test_twin_free": metrics(f1 - 0.1, n=4)}
            for role, (arch, f1) in models.items()
        },
        "distill": {"temperature": temperature, "alpha": 0.7} if task == "distill" else None,
    }
    (path / "results.json").write_text(json.dumps(results))


STUDENT_F1 = [0.8, 0.7, 0.9]
CONTROL_F1 = [0.7, 0.7, 0.8]


@pytest.fixture
def study(tmp_path) -> Path:
    """A distill multirun and a student_only multirun on folds 0-2, a failed job and a repeated fold."""
    for fold in range(3):
        teacher = f"distill.teacher_checkpoint=teachers/{fold}/best.ckpt"
        write_job(tmp_path / "distill" / str(fold), "distill", fold,
                  {"teacher": ("resnext50", 0.95), "student": ("resnext26", STUDENT_F1[fold])}, [teacher])
        write_job(tmp_path / "control" / str(fold), "classifier", fold,
                  {"student_only": ("resnext26", CONTROL_F1[fold])}, ["+experiment=student_only"])
    write_job(tmp_path / "control" / "3", "classifier", 0, {"student_only": ("resnext26", 0.1)}, ["+experiment=student_only"])
    failed = tmp_path / "distill" / "3"
    failed.mkdir()
    (failed / "failed.json").write_text(json.dumps({"status": "failed", "error_type": "RuntimeError", "message": "CUDA out of memory"}))
    return tmp_path


def summary_of(summaries, role: str) -> reporting.ModelSummary:
    return next(summary for summary in summaries if summary.role == role)


def read_study(root: Path):
    jobs = reporting.find_jobs([root])
    rows, notes = reporting.drop_repeated_folds(reporting.build_rows(jobs))
    return jobs, rows, notes, reporting.summarize_models(rows)


def test_failed_job_listed(study):
    jobs, *_ = read_study(study)
    failed = [job for job in jobs if job.results is None]
    assert [job.path.name for job in failed] == ["3"]
    assert failed[0].problem == "failed: RuntimeError: CUDA out of memory"


def test_repeated_fold_left_out(study):
    _, _, notes, summaries = read_study(study)
    assert len(notes) == 1
    assert summary_of(summaries, "student_only").estimates["test_f1_macro"].mean == pytest.approx(sum(CONTROL_F1) / 3)


def test_per_fold_checkpoint_not_a_setting(study):
    _, _, _, summaries = read_study(study)
    assert summary_of(summaries, "student").setting == ""
    assert len(summary_of(summaries, "student").rows) == 3


def test_paired_difference_with_control(study):
    _, _, _, summaries = read_study(study)
    comparisons = reporting.compare_with_control(summaries)
    assert len(comparisons) == 1
    differences = [s - c for s, c in zip(STUDENT_F1, CONTROL_F1)]
    assert comparisons[0].pairs == 3
    assert comparisons[0].estimates["test_f1_macro"].mean == pytest.approx(sum(differences) / 3)
    assert comparisons[0].estimates["twin_free_f1_macro"].mean == pytest.approx(sum(differences) / 3)


def test_report_lists_failed_job(study, tmp_path):
    report = build_report([study], tmp_path / "out")
    text = report.read_text()
    assert "CUDA out of memory" in text
    assert "## Distillation against the student trained without KD" in text


def test_swept_override_is_a_setting(tmp_path):
    for job, (fold, temperature) in enumerate([(0, 2), (0, 4), (1, 2), (1, 4)]):
        write_job(tmp_path / str(job), "distill", fold, {"student": ("s", 0.5 + job / 10)},
                  [f"distill.temperature={temperature}"], temperature=temperature)
    _, _, _, summaries = read_study(tmp_path)
    assert [summary.setting for summary in summaries] == ["distill.temperature=2", "distill.temperature=4"]
    assert [summary.temperature for summary in summaries] == [2, 4]


# A real multirun: 2 folds x 2 temperatures of a tiny distill job on generated images.
MULTIRUN_OVERRIDES = [
    "+experiment=distill",
    "+sweep=folds",
    "data.num_folds=2",
    "distill.temperature=2,4",
    "model=plain_cnn",
    "model.options.channels=[4,8]",
    "student=plain_cnn",
    "student.options.channels=[4]",
    "data.image_size=16",
    "data.batch_size=8",
    *QUICK_CPU_OVERRIDES,
    "callbacks.last_checkpoint.train_time_interval=null",
    "logger=csv",
]


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multirun")
    dataset = make_synthetic_dataset(root / "dataset", train_per_class=8, test_per_class=3, size=32)
    sweep_dir = root / "sweep"
    command = [
        sys.executable, "-m", "brainkd.run", "-m", *MULTIRUN_OVERRIDES,
        f"data.root={dataset}", f"data.cache_dir={root / 'cache'}", f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "BRAINKD_OUTPUTS": str(root / "outputs")}
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return sweep_dir


@pytest.fixture(scope="module")
def report_dir(multirun) -> Path:
    build_report([multirun], multirun / "report")
    return multirun / "report"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_multirun_has_four_jobs(multirun):
    job_dirs = sorted(path.name for path in multirun.iterdir() if (path / "results.json").is_file())
    assert job_dirs == ["0", "1", "2", "3"]


def test_jobs_have_own_checkpoints(multirun):
    for job in ("0", "1", "2", "3"):
        assert list((multirun / job / "student" / "checkpoints").glob("*.ckpt"))


def test_fold_rows_match_results(report_dir):
    rows = read_csv(report_dir / "folds.csv")
    assert len(rows) == 8
    for row in rows:
        results = json.loads((Path(row["job"]) / "results.json").read_text())
        model = results["models"][row["role"]]
        assert int(row["fold"]) == results["data"]["fold"]
        assert float(row["temperature"]) == results["distill"]["temperature"]
        for name in reporting.METRICS:
            assert float(row[f"test_{name}"]) == pytest.approx(model["test"][name])
            assert float(row[f"twin_free_{name}"]) == pytest.approx(model["test_twin_free"][name])


def test_summary_means_match_folds(report_dir):
    folds = read_csv(report_dir / "folds.csv")
    summary = read_csv(report_dir / "summary.csv")
    assert len(summary) == 4
    for row in summary:
        same = [f for f in folds if (f["role"], f["setting"]) == (row["role"], row["setting"])]
        assert len(same) == 2
        expected = sum(float(f["test_f1_macro"]) for f in same) / 2
        assert float(row["test_f1_macro_mean"]) == pytest.approx(expected)


def test_settings_name_temperature(report_dir):
    settings = {row["setting"] for row in read_csv(report_dir / "summary.csv")}
    assert settings == {"distill.temperature=2", "distill.temperature=4"}


def test_report_has_grid_table(report_dir):
    assert "## Distillation settings (temperature, alpha)" in (report_dir / "report.md").read_text()
