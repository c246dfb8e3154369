"""A two-job offline W&B multirun: one W&B run per model, resolved configs, plots and review metrics."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from wandb.proto import wandb_internal_pb2

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ROLES = ("teacher", "student")
ROLE_PLOTS = ("confusion_matrix", "roc", "reliability", "training_curves", "test_predictions")
CLASS_NAMES = {"glioma", "meningioma", "no_tumor", "pituitary"}


def read_wandb_records(path: Path) -> list:
    """Decode the records of an offline run's ``.wandb`` file.

    wandb 0.31 ships no Python reader for it. The file is a 7-byte header followed by a
    LevelDB-style log: 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length,
    type: 1 whole, 2 first, 3 middle, 4 last) and a piece of a serialised Record protobuf.
    NOTE: this is wandb's internal format and may change between wandb versions.
    """
    raw = path.read_bytes()
    block_size, header_size = 32768, 7
    records, pending, position = [], b"", header_size
    while position + header_size <= len(raw):
        left_in_block = block_size - position % block_size
        if left_in_block < header_size:
            position += left_in_block
            continue
        _, length, chunk_type = struct.unpack("<IHB", raw[position : position + header_size])
        chunk = raw[position + header_size : position + header_size + length]
        position += header_size + length
        if chunk_type == 1:
            records.append(chunk)
        elif chunk_type == 2:
            pending = chunk
        elif chunk_type == 3:
            pending += chunk
        elif chunk_type == 4:
            records.append(pending + chunk)
    parsed = []
    for data in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        parsed.append(record)
    return parsed


def summarize_offline_run(run_dir: Path) -> dict:
    """Collect the run record, the config, the artifacts and the exit code of one offline run."""
    (wandb_file,) = run_dir.glob("*.wandb")
    summary = {"artifacts": [], "exit_code": None}
    for record in read_wandb_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            summary["run"] = record.run
            summary["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "artifact":
            summary["artifacts"].append((record.artifact.type, record.artifact.name))
        elif kind == "exit":
            summary["exit_code"] = record.exit.exit_code
    return summary


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, generated_root):
    base = tmp_path_factory.mktemp("wandb-multirun")
    sweep_dir = base / "sweeps" / "2026-01-02" / "03-04-05"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(
        BRAINKD_DATA=str(generated_root),
        BRAINKD_CACHE=str(base / "cache"),
        WANDB_MODE="offline",
        WANDB_DIR=str(base / "wandb-dir"),
        WANDB_DATA_DIR=str(base / "wandb-data"),
        WANDB_CACHE_DIR=str(base / "wandb-cache"),
        WANDB_CONFIG_DIR=str(base / "wandb-config"),
    )
    command = [
        sys.executable, "-m", "brainkd.run", "-m", "+experiment=smoke",
        "model=plain_cnn", "student=plain_cnn", "model.options.channels=[8,16]", "student.options.channels=[8,16]",
        "data.image_size=16", "data.samples_per_class=null", "data.preprocess_workers=1", "trainer.max_epochs=1",
        "review.num_images=4",
        "logger=[csv,wandb]", "seed=0,1", f"hydra.sweep.dir={sweep_dir}",
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    jobs = sorted(path for path in sweep_dir.iterdir() if (path / "results.json").is_file())
    runs = {
        (job.name, role): summarize_offline_run(run_dir)
        for job in jobs
        for role in ROLES
        for run_dir in (job / role / "wandb").glob("offline-run-*")
    }
    return jobs, runs


def test_one_wandb_run_per_model(multirun):
    jobs, runs = multirun
    assert len(jobs) == 2
    assert set(runs) == {(job.name, role) for job in jobs for role in ROLES}
    assert len({summary["run"].run_id for summary in runs.values()}) == 4


def test_runs_grouped_by_sweep(multirun):
    _, runs = multirun
    assert {summary["run"].run_group for summary in runs.values()} == {"2026-01-02_03-04-05"}


def test_job_type_is_role(multirun):
    _, runs = multirun
    for (_, role), summary in runs.items():
        assert summary["run"].job_type == role


def test_tags_name_fold_and_experiment(multirun):
    _, runs = multirun
    for summary in runs.values():
        assert {"fold=0", "experiment=smoke"} <= set(summary["run"].tags)


def test_config_resolved_to_numbers(multirun):
    _, runs = multirun
    for summary in runs.values():
        config = summary["config"]
        assert config["data"]["image_size"] == 16
        # distill.teacher_epochs is ${trainer.max_epochs} in conf/config.yaml.
        assert config["distill"]["teacher_epochs"] == 1
        assert "${" not in json.dumps(config)


def test_config_records_provenance(multirun):
    jobs, runs = multirun
    for (job_name, _), summary in runs.items():
        results = json.loads((jobs[0].parent / job_name / "results.json").read_text())
        provenance = summary["config"]["provenance"]
        assert provenance["manifest_hash"] == results["data"]["manifest_hash"]
        assert "git_commit" in provenance
        assert results["provenance"] == provenance


def test_runs_finished_cleanly(multirun):
    _, runs = multirun
    for summary in runs.values():
        assert summary["exit_code"] == 0


def test_student_checkpoint_is_artifact(multirun):
    _, runs = multirun
    for (_, role), summary in runs.items():
        models = [name for kind, name in summary["artifacts"] if kind == "model"]
        if role == "student":
            assert models == [f"student-{summary['run'].run_id}"]
        else:
            assert models == []


def test_review_tables_logged(multirun):
    _, runs = multirun
    for summary in runs.values():
        table_names = [name for kind, name in summary["artifacts"] if kind == "run_table"]
        assert any("per_class" in name for name in table_names)
        assert any("confusion_matrix" in name for name in table_names)


@pytest.mark.parametrize("role", ROLES)
def test_role_plots_are_pngs(multirun, role):
    jobs, _ = multirun
    for name in ROLE_PLOTS:
        path = jobs[0] / role / "plots" / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 300
            assert image.height >= 200


def test_preprocessing_plot_once_per_job(multirun):
    jobs, _ = multirun
    for job in jobs:
        with Image.open(job / "plots" / "preprocessing.png") as image:
            assert image.format == "PNG"
            assert image.width >= 400


def test_results_gain_review_metrics(multirun):
    jobs, _ = multirun
    results = json.loads((jobs[0] / "results.json").read_text())
    for role in ROLES:
        test = results["models"][role]["test"]
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "loss", "n", "confusion_matrix"):
            assert key in test
        for key in ("sensitivity_per_class", "specificity_per_class", "auroc_per_class", "recall_per_class"):
            assert set(test[key]) == CLASS_NAMES
        assert 0.0 <= test["ece"] <= 1.0


def test_student_reports_teacher_agreement(multirun):
    jobs, _ = multirun
    results = json.loads((jobs[0] / "results.json").read_text())
    assert 0.0 <= results["models"]["student"]["test"]["agreement_with_teacher"] <= 1.0
    assert "agreement_with_teacher" not in results["models"]["teacher"]["test"]
