"""Repeatable runs, and runs killed mid-epoch that resume to the same final metrics."""

from __future__ import annotations

import csv
import re
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from brainkd.data.resumable import EpochShuffleSampler
from brainkd.resume import LAST_CHECKPOINT, STAGE_RECORD, capture_random_state, restore_random_state
from brainkd.tracking.csv_log import RestoreMetricRows, ResumableCSVLogger
from job_helpers import kill_overrides, read_results, run_command, run_in_process, tiny_overrides
from messy_data import make_plain_dataset

# 6 training images per class: 18 train and 6 validation images, 5 batches of 4 per epoch.
TRAIN_PER_CLASS = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-data")
    return make_plain_dataset(root / "dataset", train_per_class=TRAIN_PER_CLASS), root / "cache"


def model_results(results: dict, role: str) -> tuple[dict, dict]:
    model = results["models"][role]
    return model["val"], model["test"]


def test_sampler_order_depends_on_seed_and_epoch():
    first = list(EpochShuffleSampler(10, seed=0))
    assert first == list(EpochShuffleSampler(10, seed=0))
    assert first != list(EpochShuffleSampler(10, seed=1))
    later = EpochShuffleSampler(10, seed=0)
    later.set_epoch(1)
    assert list(later) != first
    assert sorted(index for index, _ in first) == list(range(10))


def test_sampler_start_skips_draws_once():
    sampler = EpochShuffleSampler(10, seed=3)
    full = list(sampler)
    sampler.start = 4
    assert list(sampler) == full[4:]
    assert list(sampler) == full


def test_random_state_round_trip(tmp_path):
    state = capture_random_state()
    expected = torch.rand(3)
    torch.save(state, tmp_path / "state.pt")
    restore_random_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected)


def test_same_seed_gives_same_metrics(dataset, tmp_path):
    root, cache = dataset
    overrides = [*tiny_overrides(root, cache), "seed=0", "model.options.dropout=0.5"]
    first = run_in_process(overrides, tmp_path / "first")
    second = run_in_process(overrides, tmp_path / "second")
    assert model_results(first, "teacher") == model_results(second, "teacher")


@pytest.fixture(scope="module")
def uninterrupted_run_dir(dataset, tmp_path_factory):
    root, cache = dataset
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run_in_process([*tiny_overrides(root, cache), "logger=csv"], run_dir)
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted_classifier(uninterrupted_run_dir):
    return read_results(uninterrupted_run_dir)


# In a resumed epoch these training means cover only the batches after the resume.
TRAINING_EPOCH_MEANS = ("train/loss_epoch", "train/accuracy")


def metric_rows(run_dir: Path, role: str) -> list[dict]:
    """Read a stage's metrics.csv, leaving out the training metrics averaged over an epoch."""
    with open(run_dir / role / "csv" / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [{key: value for key, value in row.items() if key not in TRAINING_EPOCH_MEANS} for row in rows]


def test_classifier_killed_mid_epoch_resumes_exactly(dataset, uninterrupted_classifier, tmp_path):
    root, cache = dataset
    overrides = tiny_overrides(root, cache, checkpoint_every=3)
    run_dir = tmp_path / "run"

    # Checkpoints follow steps 3, 5 (end of epoch 0) and 6. The kill comes after step 7, in epoch 1.
    killed = run_command([*overrides, *kill_overrides(steps=7)], run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run_dir / "results.json").exists()
    last = torch.load(run_dir / "teacher" / "checkpoints" / LAST_CHECKPOINT, weights_only=True)
    assert last["global_step"] == 6
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 1}]

    resumed = run_in_process([*overrides, "ckpt_path=last"], run_dir)
    assert model_results(resumed, "teacher") == model_results(uninterrupted_classifier, "teacher")


def test_resumed_stage_keeps_earlier_csv_rows(dataset, uninterrupted_run_dir, tmp_path):
    root, cache = dataset
    overrides = [*tiny_overrides(root, cache, checkpoint_every=3), "logger=csv"]
    run_dir = tmp_path / "run"
    killed = run_command([*overrides, *kill_overrides(steps=7)], run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    run_in_process([*overrides, "ckpt_path=last"], run_dir)
    resumed_rows = metric_rows(run_dir, "teacher")
    expected_rows = metric_rows(uninterrupted_run_dir, "teacher")
    assert [row["step"] for row in resumed_rows] == [row["step"] for row in expected_rows]
    assert resumed_rows == expected_rows


def test_csv_rows_restored_from_checkpoint_step(tmp_path):
    earlier = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    for step in range(6):
        earlier.log_metrics({"train/loss_step": 1.0 + step}, step=step)
    earlier.save()

    # A stage that resumes from a checkpoint after the last epoch trains no further, so the
    # rows come back when the checkpoint is loaded, not when training starts.
    resumed = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    RestoreMetricRows().on_load_checkpoint(SimpleNamespace(loggers=[resumed]), None, {"global_step": 4})
    resumed.log_metrics({"test/accuracy": 0.5}, step=4)
    resumed.save()
    with open(tmp_path / "csv" / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["step"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert [row["train/loss_step"] for row in rows[:4]] == ["1.0", "2.0", "3.0", "4.0"]
    assert rows[4]["test/accuracy"] == "0.5"


@pytest.mark.slow
def test_classifier_killed_in_validation_resumes_exactly(dataset, uninterrupted_classifier, tmp_path):
    root, cache = dataset
    # Step 5 ends epoch 0, so the mid-epoch checkpoint skips it and last.ckpt comes from after its validation.
    overrides = tiny_overrides(root, cache, checkpoint_every=5)
    run_dir = tmp_path / "run"

    kill = ["+callbacks.kill._target_=tests.job_helpers.KillInValidation", "+callbacks.kill.epoch=1"]
    killed = run_command([*overrides, *kill], run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = torch.load(run_dir / "teacher" / "checkpoints" / LAST_CHECKPOINT, weights_only=True)
    assert last["global_step"] == 5
    assert last["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 1

    resumed = run_in_process([*overrides, "ckpt_path=last"], run_dir)
    assert model_results(resumed, "teacher") == model_results(uninterrupted_classifier, "teacher")


def test_best_checkpoint_drops_optimiser_state(dataset, uninterrupted_classifier, tmp_path):
    root, cache = dataset
    best = Path(uninterrupted_classifier["models"]["teacher"]["checkpoint"])
    last = best.parent / LAST_CHECKPOINT
    best_checkpoint = torch.load(best, weights_only=True)
    last_checkpoint = torch.load(last, weights_only=True)

    assert "optimizer_states" not in best_checkpoint
    assert "optimizer_states" in last_checkpoint
    # 2 epochs of 5 batches: last.ckpt follows the final validation, improved or not.
    assert last_checkpoint["global_step"] == 10
    assert best_checkpoint["brainkd"]["arch"] == "plain_cnn"
    assert best.stat().st_size < last.stat().st_size
    with pytest.raises(ValueError, match=rf"ckpt_path {re.escape(str(best))} contains no optimiser state"):
        run_in_process([*tiny_overrides(root, cache), f"ckpt_path={best}"], tmp_path / "run")


def test_resume_from_folder_is_rejected(dataset, tmp_path):
    root, cache = dataset
    with pytest.raises(ValueError, match=rf"ckpt_path {re.escape(str(tmp_path))} is not a regular file"):
        run_in_process([*tiny_overrides(root, cache), f"ckpt_path={tmp_path}"], tmp_path / "run")


def test_resume_without_checkpoint_names_the_fix(dataset, tmp_path):
    root, cache = dataset
    with pytest.raises(FileNotFoundError, match="hydra.run.dir"):
        run_in_process([*tiny_overrides(root, cache), "ckpt_path=last"], tmp_path / "never-ran")


@pytest.mark.slow
def test_distill_killed_in_student_reuses_teacher(dataset, tmp_path):
    root, cache = dataset
    overrides = tiny_overrides(root, cache, task="distill", checkpoint_every=2)
    uninterrupted = run_in_process(overrides, tmp_path / "uninterrupted")
    run_dir = tmp_path / "run"

    killed = run_command([*overrides, *kill_overrides(steps=3, stage="student")], run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (run_dir / "teacher" / STAGE_RECORD).is_file()
    teacher_files = sorted((run_dir / "teacher" / "checkpoints").iterdir())

    resumed = run_in_process([*overrides, "ckpt_path=last"], run_dir)
    assert sorted((run_dir / "teacher" / "checkpoints").iterdir()) == teacher_files
    assert model_results(resumed, "teacher") == model_results(uninterrupted, "teacher")

    # A reused teacher is not tested again, so the student has no agreement with it to report.
    resumed_val, resumed_test = model_results(read_results(run_dir), "student")
    val, test = model_results(uninterrupted, "student")
    assert resumed_val == val
    assert resumed_test == {key: value for key, value in test.items() if key != "agreement_with_teacher"}
