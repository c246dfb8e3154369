"""Pieces of the post-test review: example picking, options, run identity and stale W&B runs."""

import numpy as np
import pytest

from brainkd.data.preprocess import PreprocessSettings, preprocess_image
from brainkd.data.synthetic import synthetic_slice
from brainkd.tracking import run_info
from brainkd.tracking.review import JobReview, pick_examples, take_in_turn
from brainkd.tracking.wandb_report import finish_stale_run


def test_take_in_turn_alternates():
    assert take_in_turn([[1, 2, 3], [10], [20, 21]], 5) == [1, 10, 20, 2, 21]


def test_take_in_turn_stops_when_empty():
    assert take_in_turn([[1], [], [2]], 10) == [1, 2]


def test_pick_examples_wrong_first():
    labels = np.array([0, 0, 0, 1, 1])
    predicted = np.array([0, 1, 0, 1, 0])
    assert pick_examples(labels, predicted, num_classes=2, count=4) == [1, 4, 0, 3]


def test_review_rejects_unknown_option():
    with pytest.raises(ValueError, match="review.colour"):
        JobReview({"colour": "red"}, datamodule=None, output_dir=".")


def test_steps_leave_output_unchanged():
    gray = synthetic_slice("glioma", 64, np.random.default_rng(0))
    settings = PreprocessSettings(image_size=32)
    steps = {}
    recorded = preprocess_image(gray, settings, steps)
    assert np.array_equal(recorded.image, preprocess_image(gray, settings).image)
    assert list(steps) == ["original", "mask", "denoised", "normalised"]
    assert steps["mask"].dtype == bool
    assert np.array_equal(steps["normalised"], recorded.image)


def test_sweep_group_outside_hydra():
    assert run_info.sweep_group() is None


def test_git_state_of_checkout():
    state = run_info.git_state()
    assert set(state) == {"git_commit", "git_dirty"}
    assert state["git_commit"] is None or len(state["git_commit"]) == 40


def test_git_state_outside_git(tmp_path):
    assert run_info.git_state(tmp_path) == {"git_commit": None, "git_dirty": None}


def test_stale_wandb_run_finished(monkeypatch):
    import wandb

    class OpenRun:
        name = "left-open"

        def __init__(self):
            self.exit_codes = []

        def finish(self, exit_code=0):
            self.exit_codes.append(exit_code)

    run = OpenRun()
    monkeypatch.setattr(wandb, "run", run)
    finish_stale_run()
    assert run.exit_codes == [1]


@pytest.mark.parametrize("value", [-1, 2.5, True])
def test_review_rejects_bad_image_count(value):
    with pytest.raises(ValueError, match="review.num_images"):
        JobReview({"num_images": value}, datamodule=None, output_dir=".")
