"""One end-to-end run of the smoke preset through the command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, dataset_root):
    run_dir = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "BRAINKD_DATA": str(dataset_root), "BRAINKD_CACHE": str(run_dir / "cache")}
    command = [sys.executable, "-m", "brainkd.run", "+experiment=smoke", f"hydra.run.dir={run_dir / 'out'}"]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    yield run_dir / "out", json.loads((run_dir / "out" / "results.json").read_text())
    # Its checkpoints take about 0.5 GB, and pytest would keep them until the session ends.
    shutil.rmtree(run_dir, ignore_errors=True)


def test_results_hold_both_models(smoke_run):
    _, results = smoke_run
    assert results["task"] == "distill"
    assert set(results["models"]) == {"teacher", "student"}
    assert results["models"]["teacher"]["arch"] == "resnext50_32x4d"
    assert results["models"]["student"]["arch"] == "resnext26ts"


def test_student_is_smaller_than_teacher(smoke_run):
    _, results = smoke_run
    teacher = results["models"]["teacher"]["parameters"]
    student = results["models"]["student"]["parameters"]
    assert student < teacher / 2


def test_test_metrics_cover_every_test_image(smoke_run):
    _, results = smoke_run
    num_test = sum(results["data"]["counts"]["test"].values())
    for role in ("teacher", "student"):
        test = results["models"][role]["test"]
        assert test["n"] == num_test
        assert sum(map(sum, test["confusion_matrix"])) == num_test
        assert 0.0 <= test["accuracy"] <= 1.0
        assert set(test["recall_per_class"]) == {"glioma", "meningioma", "no_tumor", "pituitary"}


def test_accuracy_matches_confusion_matrix(smoke_run):
    _, results = smoke_run
    test = results["models"]["student"]["test"]
    matrix = test["confusion_matrix"]
    correct = sum(matrix[i][i] for i in range(len(matrix)))
    assert test["accuracy"] == pytest.approx(correct / test["n"])


def test_outputs_written_beside_results(smoke_run):
    out, results = smoke_run
    assert (out / "fold_manifest.json").is_file()
    assert (out / "teacher" / "csv" / "metrics.csv").is_file()
    assert (out / "student" / "checkpoints" / "last.ckpt").is_file()
    assert Path(results["models"]["student"]["checkpoint"]).is_file()


def test_student_checkpoint_excludes_teacher(smoke_run):
    out, _ = smoke_run
    checkpoint = torch.load(out / "student" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any(key.startswith("teacher") for key in checkpoint["state_dict"])
    assert checkpoint["brainkd"]["arch"] == "resnext26ts"
