"""Mistakes in the trainer and callbacks config stop a job before its images are preprocessed."""

from __future__ import annotations

import pytest
import torch

from brainkd.data.folders import CLASS_NAMES
from brainkd.modules import DistillModule, TeacherModule
from brainkd.modules.metrics import flatten_metrics, metric_collection, scalar_names
from brainkd.trainer_checks import check_monitors, check_trainer_config, logged_metrics
from job_helpers import compose_config, run_in_process, tiny_overrides


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.precision=bf17", "invalid trainer or callbacks config: ValueError: Precision 'bf17' is invalid"),
        ("+trainer.max_epoch=3", "TypeError: Trainer.__init__() got an unexpected keyword argument 'max_epoch'"),
        ("trainer.devices=0", "`Trainer(devices=0)` value is not a valid input"),
        ("callbacks.model_checkpoint.mode=maximum", "`mode` can be min, max but got maximum"),
        ("callbacks.model_checkpoint._target_=nosuchpackage.Checkpoint", "No module named 'nosuchpackage'"),
        ("trainer.log_every_n_steps=abc", "trainer.log_every_n_steps must be an integer, got 'abc'"),
        ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be an integer >= 1, got 0"),
        ("trainer.deterministic=maybe", "trainer.deterministic must be true, false or warn, got 'maybe'"),
        ("+callbacks.extra=5", "callbacks.extra must be a mapping with a _target_ naming a Lightning Callback class, got 5"),
        ("~callbacks.model_checkpoint._target_", "callbacks.model_checkpoint must be a mapping with a _target_"),
        ("+callbacks.extra={_target_:builtins.dict}", "callbacks.extra._target_=builtins.dict is not a Lightning Callback class"),
        ("+trainer.strategy=ddp_spawn", "trainer.strategy=ddp_spawn starts its processes by spawning"),
        ("trainer=ddp", "trainer.sync_batchnorm=true needs GPUs, and this trainer runs on CPUs"),
    ],
)
def test_bad_trainer_option_stops_before_data(override, expected, generated_root, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError) as error:
        run_in_process([*tiny_overrides(generated_root, cache), override], tmp_path / "out")
    assert expected in str(error.value)
    assert not cache.exists()


def test_monitor_typo_lists_logged_metrics(generated_root, tmp_path):
    cache = tmp_path / "cache"
    overrides = [*tiny_overrides(generated_root, cache), "callbacks.model_checkpoint.monitor=val/f1"]
    with pytest.raises(ValueError) as error:
        run_in_process(overrides, tmp_path / "out")
    message = str(error.value)
    assert message.startswith("callbacks.model_checkpoint.monitor=val/f1 names a metric that this job does not log.")
    assert "val/f1_macro" in message
    assert "val/recall_glioma" in message
    assert not cache.exists()


def test_valid_trainer_config_leaves_no_folder(tmp_path):
    output_dir = tmp_path / "out"
    check_trainer_config(compose_config(["+experiment=distill", "trainer=cpu"], output_dir))
    assert not output_dir.exists()


def test_distill_metric_monitor_needs_reused_teacher():
    callbacks = {"early": {"monitor": "train/kd"}}
    check_monitors(callbacks, logged_metrics(list(CLASS_NAMES), DistillModule.TRAIN_METRICS))
    with pytest.raises(ValueError, match="callbacks.early.monitor=train/kd names a metric"):
        check_monitors(callbacks, logged_metrics(list(CLASS_NAMES), TeacherModule.TRAIN_METRICS))


def test_scalar_names_match_computed_metrics():
    metrics = metric_collection(len(CLASS_NAMES))
    metrics.update(torch.eye(4), torch.arange(4))
    assert sorted(scalar_names(CLASS_NAMES)) == sorted(flatten_metrics(metrics.compute(), CLASS_NAMES))
