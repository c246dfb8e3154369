"""Failed jobs: failed.json, a one-paragraph error for config mistakes, and multiruns that go on."""

from __future__ import annotations

import json
import sys

import pytest

from brainkd import failures
from brainkd.data.splits import assign_folds
from brainkd.results import format_comparison
from job_helpers import run_command, tiny_overrides
from messy_data import make_plain_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("failed-jobs")
    return make_plain_dataset(root / "dataset"), root / "cache"


def run_main(monkeypatch, arguments: list[str]):
    """Call the Hydra entry point in this process with ``arguments`` as the command line."""
    from brainkd.run import main

    monkeypatch.setattr(sys, "argv", ["brainkd.run", *arguments])
    return main()


def read_failure(output_dir) -> dict:
    return json.loads((output_dir / failures.FAILED_FILE).read_text())


def test_check_in_brainkd_is_user_error():
    with pytest.raises(ValueError) as error:
        assign_folds([0, 1], [0, 1], num_folds=1, seed=0)
    assert failures.is_user_error(error.value)


def test_error_outside_brainkd_is_not_user_error():
    with pytest.raises(ValueError) as error:
        int("not a number")
    assert not failures.is_user_error(error.value)


def test_key_error_in_brainkd_is_not_user_error():
    with pytest.raises(KeyError) as error:
        format_comparison({})
    assert not failures.is_user_error(error.value)


def test_failure_record_written_and_cleared(tmp_path):
    try:
        raise FileNotFoundError("data.root /nowhere does not exist")
    except FileNotFoundError as error:
        failures.write_failure(tmp_path, error)
    record = read_failure(tmp_path)
    assert record["status"] == "failed"
    assert record["error_type"] == "FileNotFoundError"
    assert record["message"] == "data.root /nowhere does not exist"
    assert "Traceback" in record["traceback"]
    failures.clear_failure(tmp_path)
    assert not (tmp_path / failures.FAILED_FILE).exists()


def test_config_mistake_exits_with_message(dataset, tmp_path, monkeypatch):
    root, cache = dataset
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_main(monkeypatch, [*tiny_overrides(root, cache), "model.name=plain_cn", f"hydra.run.dir={run_dir}"])
    message = str(exit_info.value.code)
    assert message.startswith("error: cannot build model.name='plain_cn'")
    assert "Close names: plain_cnn" in message
    assert "HYDRA_FULL_ERROR=1" in message
    record = read_failure(run_dir)
    assert record["error_type"] == "ValueError"
    assert "model.name='plain_cn'" in record["message"]
    assert record["user_error"] is True


def test_full_error_variable_keeps_traceback(dataset, tmp_path, monkeypatch):
    root, cache = dataset
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError, match="model.name='plain_cn'"):
        run_main(monkeypatch, [*tiny_overrides(root, cache), "model.name=plain_cn", f"hydra.run.dir={tmp_path / 'run'}"])


def test_multirun_continues_after_failure(dataset, tmp_path, monkeypatch):
    root, cache = dataset
    sweep_dir = tmp_path / "sweep"
    arguments = [
        "--multirun",
        *tiny_overrides(root, cache),
        "trainer.max_epochs=1",
        "continue_on_error=true",
        "model.name=plain_cn,plain_cnn",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    run_main(monkeypatch, arguments)
    assert read_failure(sweep_dir / "0")["status"] == "failed"
    assert not (sweep_dir / "0" / "results.json").exists()
    assert (sweep_dir / "1" / "results.json").is_file()
    assert not (sweep_dir / "1" / failures.FAILED_FILE).exists()


def test_command_line_error_has_no_traceback(dataset, tmp_path):
    root, cache = dataset
    completed = run_command([*tiny_overrides(root, cache), "data.image_size=8", "model.options.channels=[4,8,16,32]"], tmp_path / "run")
    assert completed.returncode == 1
    assert "error: cannot build model.name='plain_cnn'" in completed.stderr
    assert "data.image_size=8" in completed.stderr
    assert "Traceback" not in completed.stderr
