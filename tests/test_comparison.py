"""The comparison study: model configs, the baseline and student_only presets, the sweep presets and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from brainkd import comparison, pipeline, report
from brainkd.modules import TeacherModule
from brainkd.run import train
from job_helpers import QUICK_CPU_OVERRIDES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"
COMPARISON_ENTRIES = ["distill", "student_only", "plain_cnn", "vgg16", "mlp", "dbn"]
BASELINES = {"plain_cnn": "plain_cnn", "vgg16": "vgg16_bn", "mlp": "mlp", "dbn": "dbn"}


def compose_config(overrides: list[str], output_dir: Path | str = "/tmp/brainkd-compose", hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "config",
            overrides=[*overrides, f"paths.output_dir={output_dir}"],
            return_hydra_config=hydra_config,
        )


def data_overrides(data_root: Path, cache_dir: Path) -> list[str]:
    """Return overrides for generated images at 32 px with cheap preprocessing, one epoch and no plots."""
    return [
        f"data.root={data_root}",
        f"data.cache_dir={cache_dir}",
        "data.image_size=32",
        "data.batch_size=8",
        *QUICK_CPU_OVERRIDES,
        "logger=none",
        "review.plots=false",
    ]


# Configs and presets.


def test_comparison_entries_match_sweep():
    cfg = compose_config(["+sweep=comparison"], hydra_config=True)

    entries = cfg.hydra.sweeper.params["+comparison"].split(",")

    assert entries == COMPARISON_ENTRIES
    assert sorted(entries) == sorted(path.stem for path in (CONF_DIR / "comparison").glob("*.yaml"))


@pytest.mark.parametrize("model", BASELINES)
def test_baseline_preset_selects_model(model):
    cfg = compose_config(["+experiment=baseline", f"model={model}"])

    assert cfg.task == "classifier"
    assert cfg.role == "baseline"
    assert cfg.model.name == BASELINES[model]


def test_baseline_preset_defaults_to_plain_cnn():
    cfg = compose_config(["+experiment=baseline"])

    assert cfg.model.name == "plain_cnn"


def test_student_only_preset_trains_student_arch():
    cfg = compose_config(["+experiment=student_only"])
    distill = compose_config(["+experiment=distill"])

    assert cfg.task == "classifier"
    assert cfg.role == "student_only"
    assert cfg.model == distill.student


def test_dbn_config_has_pretrain_block():
    cfg = compose_config(["model=dbn"])

    assert set(cfg.model.pretrain) == {"epochs", "cd_steps", "lr"}
    assert cfg.model.pretrain.epochs > 0


@pytest.mark.parametrize("entry", COMPARISON_ENTRIES)
def test_full_size_gpu_study_composes(entry):
    cfg = compose_config(["+sweep=comparison_cv", f"+comparison={entry}", "trainer=gpu", "data.fold=9"], hydra_config=True)

    assert cfg.data.image_size == 224
    assert cfg.trainer.max_epochs == 10
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.num_folds == 10
    assert cfg.data.fold == 9
    assert cfg.hydra.sweeper.params["data.fold"] == "range(0,10)"
    assert cfg.continue_on_error is True
    if entry == "distill":
        assert (cfg.task, cfg.model.name, cfg.student.name) == ("distill", "resnext50_32x4d", "resnext26ts")
    elif entry == "student_only":
        assert (cfg.task, cfg.role, cfg.model.name) == ("classifier", "student_only", "resnext26ts")
    else:
        assert (cfg.task, cfg.role, cfg.model.name) == ("classifier", "baseline", BASELINES[entry])


def test_official_split_study_holds_no_fold():
    cfg = compose_config(["+sweep=comparison", "+comparison=vgg16", "trainer=gpu"], hydra_config=True)

    assert cfg.data.fold is None
    assert "data.fold" not in cfg.hydra.sweeper.params


@pytest.mark.parametrize("preset, folds", [("comparison_cpu", None), ("comparison_cv_cpu", "0,1,2")])
def test_cpu_study_sizes(preset, folds):
    cfg = compose_config([f"+sweep={preset}", "+comparison=distill"], hydra_config=True)

    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data.image_size == 64
    assert cfg.trainer.max_epochs == 3
    assert cfg.distill.teacher_epochs == 3
    assert cfg.distill.student_epochs == 3
    assert cfg.hydra.sweeper.params.get("data.fold") == folds


# Building and training each model.


@pytest.mark.parametrize("model", BASELINES)
def test_model_builds_from_config(model):
    cfg = compose_config(["+experiment=baseline", f"model={model}"])

    network = pipeline.build_model(cfg.model, num_classes=4, image_size=64)
    logits = network(torch.zeros(2, 1, 64, 64))

    assert logits.shape == (2, 4)


def test_vgg16_rejects_too_small_image():
    cfg = compose_config(["+experiment=baseline", "model=vgg16"])

    with pytest.raises(ValueError, match=r"data.image_size=16 is too small for model 'vgg16_bn'"):
        pipeline.build_model(cfg.model, num_classes=4, image_size=16)


def test_vgg16_trains_at_32_px(tmp_path, generated_root, cache_dir):
    # Fully connected layers of 64 units in place of 4096 keep the test small, and the convolutions stay VGG16's.
    overrides = [
        "+experiment=baseline",
        "model=vgg16",
        "model.options.mlp_ratio=0.015625",
        *data_overrides(generated_root, cache_dir),
        "+trainer.limit_train_batches=2",
    ]

    results = train(compose_config(overrides, tmp_path))

    vgg = results["models"]["baseline"]
    assert vgg["arch"] == "vgg16_bn"
    assert vgg["test"]["n"] == 16
    assert 0.0 <= vgg["test"]["accuracy"] <= 1.0


def test_student_only_run_records_role(tmp_path, generated_root, cache_dir):
    overrides = ["+experiment=student_only", *data_overrides(generated_root, cache_dir), "+trainer.limit_train_batches=1"]

    results = train(compose_config(overrides, tmp_path))

    assert list(results["models"]) == ["student_only"]
    assert results["models"]["student_only"]["role"] == "student_only"
    assert results["models"]["student_only"]["arch"] == "resnext26ts"
    assert json.loads((tmp_path / "results.json").read_text())["models"]["student_only"]["arch"] == "resnext26ts"


# A small multirun through the command line and its report.


@pytest.fixture(scope="module")
def cross_validation_multirun(tmp_path_factory, generated_root, cache_dir):
    """Run three comparison entries on two folds of the generated images with ``-m``."""
    sweep_dir = tmp_path_factory.mktemp("comparison") / "multirun"
    command = [
        sys.executable, "-m", "brainkd.run", "-m",
        "+sweep=comparison_cv_cpu",
        "+comparison=plain_cnn,mlp,dbn",
        "data.num_folds=2",
        "data.fold=0,1",
        "continue_on_error=false",
        *data_overrides(generated_root, cache_dir),
        f"hydra.sweep.dir={sweep_dir}",
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return sweep_dir


def read_jobs(sweep_dir: Path) -> list[dict]:
    paths = sorted(sweep_dir.glob("*/results.json"), key=lambda path: int(path.parent.name))
    return [json.loads(path.read_text()) for path in paths]


def test_multirun_records_role_and_arch(cross_validation_multirun):
    jobs = read_jobs(cross_validation_multirun)

    recorded = sorted((model["role"], model["arch"], job["data"]["fold"]) for job in jobs for model in job["models"].values())

    expected = sorted(
        (role, arch, fold)
        for role, arch in [("baseline", "plain_cnn"), ("baseline", "mlp"), ("baseline", "dbn")]
        for fold in (0, 1)
    )
    assert recorded == expected


def test_dbn_run_records_pretrain_history(cross_validation_multirun):
    jobs = read_jobs(cross_validation_multirun)
    dbn_jobs = [job for job in jobs if job["models"].get("baseline", {}).get("arch") == "dbn"]
    assert len(dbn_jobs) == 2

    for job in dbn_jobs:
        history = job["models"]["baseline"]["pretrain_history"]
        epochs = job["config"]["model"]["pretrain"]["epochs"]
        assert [(entry["layer"], entry["epoch"]) for entry in history] == [
            (layer, epoch) for layer in range(2) for epoch in range(epochs)
        ]
        for layer in range(2):
            errors = [entry["reconstruction_error"] for entry in history if entry["layer"] == layer]
            assert errors[-1] < errors[0], f"layer {layer} errors {errors} did not decrease"


def test_other_models_have_no_pretrain_history(cross_validation_multirun):
    for job in read_jobs(cross_validation_multirun):
        for model in job["models"].values():
            if model["arch"] != "dbn":
                assert "pretrain_history" not in model


def report_sections(markdown: str) -> dict[str, str]:
    """Split report.md into its level-2 sections, keyed by heading."""
    sections = {}
    for block in markdown.split("\n## ")[1:]:
        heading, _, body = block.partition("\n")
        sections[heading] = body
    return sections


def table_rows(table: str) -> dict[str, list[str]]:
    """Map the first cell of each body row of the first Markdown table in ``table`` to its other cells."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


MULTIRUN_LABELS = ["dbn (baseline)", "mlp (baseline)", "plain_cnn (baseline)"]


def test_report_has_row_per_model(cross_validation_multirun, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "brainkd.report", str(cross_validation_multirun), "--out", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    sections = report_sections((tmp_path / "report.md").read_text())
    for heading in (
        "Test metrics: all of Testing/",
        "Cross-validation: accuracy on each held-out fold",
        "Cross-validation: F1 on each held-out fold",
    ):
        assert sorted(table_rows(sections[heading])) == MULTIRUN_LABELS, heading


def test_report_held_out_values_match_results(cross_validation_multirun, tmp_path):
    report.build_report([cross_validation_multirun], tmp_path)

    rows = table_rows(report_sections((tmp_path / "report.md").read_text())["Cross-validation: accuracy on each held-out fold"])

    for job in read_jobs(cross_validation_multirun):
        model = next(iter(job["models"].values()))
        label = f"{model['arch']} ({model['role']})"
        fold = job["data"]["fold"]
        assert rows[label][fold] == f"{model['val']['val/accuracy']:.4f}"


# The report on hand-made results.


def write_job(folder: Path, role: str, arch: str, accuracy: float, fold: int | None) -> None:
    """Write a results.json whose metrics all derive from ``accuracy``."""
    metrics = {"accuracy": accuracy, "precision_macro": accuracy, "recall_macro": accuracy, "f1_macro": accuracy,
               "loss": 1.0 - accuracy}
    results = {
        "task": "classifier",
        "status": "completed",
        "data": {"fold": 0 if fold is None else fold, "num_folds": 10, "manifest_hash": f"hash{fold}"},
        "models": {role: {"role": role, "arch": arch, "test": {"n": 394, **metrics},
                          "val": {f"val/{name}": value for name, value in metrics.items()}}},
        "config": {"data": {"fold": fold}},
    }
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


def test_report_official_split_has_no_fold_table(tmp_path):
    write_job(tmp_path / "multirun" / "0", "student_only", "resnext26ts", 0.7, fold=None)
    write_job(tmp_path / "multirun" / "1", "baseline", "vgg16_bn", 0.6, fold=None)

    sections = report_sections(report.build_report([tmp_path / "multirun"], tmp_path / "report").read_text())

    assert sorted(table_rows(sections["Test metrics: all of Testing/"])) == ["resnext26ts (student_only)", "vgg16_bn (baseline)"]
    assert not any(heading.startswith("Cross-validation") for heading in sections)


def test_report_fold_table_mean_and_std(tmp_path):
    for job, (arch, accuracy, fold) in enumerate([("mlp", 0.5, 0), ("mlp", 0.7, 1), ("dbn", 0.4, 0)]):
        write_job(tmp_path / "multirun" / str(job), "baseline", arch, accuracy, fold)

    sections = report_sections(report.build_report([tmp_path / "multirun"], tmp_path / "report").read_text())

    rows = table_rows(sections["Cross-validation: accuracy on each held-out fold"])
    assert rows["mlp (baseline)"] == ["0.5000", "0.7000", "0.6000 ± 0.1414"]
    assert rows["dbn (baseline)"] == ["0.4000", "n/a", "0.4000"]


# The table helpers.


def test_mean_and_std_formats():
    assert comparison.mean_and_std([]) == "n/a"
    assert comparison.mean_and_std([0.25]) == "0.2500"
    assert comparison.mean_and_std([0.5, 0.7, 0.9]) == "0.7000 ± 0.2000"


def test_fold_table_without_folds():
    assert comparison.fold_table({}) is None
    assert comparison.fold_table({"mlp (baseline)": {}}) is None


def test_fold_table_skips_missing_value_in_mean():
    table = comparison.fold_table({"mlp (baseline)": {0: 0.5, 1: None, 2: 0.7}})

    assert table_rows(table)["mlp (baseline)"] == ["0.5000", "n/a", "0.7000", "0.6000 ± 0.1414"]


# Resuming a pre-trained model.


def test_pretrain_history_survives_checkpoint(tmp_path):
    history = [{"layer": 0, "epoch": 0, "reconstruction_error": 0.25}, {"layer": 0, "epoch": 1, "reconstruction_error": 0.125}]
    cfg = compose_config(["model=dbn"])
    module = TeacherModule(pipeline.build_model(cfg.model, num_classes=4, image_size=32), ["a", "b", "c", "d"])
    module.pretrain_history = history
    checkpoint = {}

    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    resumed = TeacherModule(pipeline.build_model(cfg.model, num_classes=4, image_size=32), ["a", "b", "c", "d"])
    resumed.on_load_checkpoint(torch.load(tmp_path / "checkpoint.pt", weights_only=True))

    assert resumed.pretrain_history == history
