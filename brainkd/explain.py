"""Draw Grad-CAM heatmaps of a run's models side by side over chosen images.

    python -m brainkd.explain run=outputs/<date>/<time> [input=FILE_OR_FOLDER] [num_images=8]

Each row shows one preprocessed image, then the heatmap of each model of the run (teacher
and student of a distill job) for the class that model predicts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from brainkd.cli import Option, parse_options, positive_int, run_tool
from brainkd.data.folders import SPLIT_FOLDERS, canonical_class
from brainkd.data.reading import ImageReadError
from brainkd.gradcam import feature_map_size, gradcam_heatmaps, overlay_heatmap
from brainkd.inference import CheckpointModel, list_input_files, load_checkpoint_model, predict_probabilities, prepare_file
from brainkd.tracking.plots import plot_image_grid

log = logging.getLogger(__name__)

USAGE = "usage: python -m brainkd.explain run=RUN_DIR [input=FILE_OR_FOLDER] [num_images=8] [key=value ...]"
OPTIONS = {
    "run": Option("output folder of a brainkd run (holds results.json and <role>/checkpoints/)"),
    "input": Option("image file or folder to explain", default=None, default_help="evenly spaced test images of the run"),
    "num_images": Option("how many images to explain when input is a folder or not given", default=8, parse=positive_int),
    "output": Option("PNG file to write", default=None, default_help="<run>/explanations/gradcam.png"),
    "device": Option("torch device to run on, such as cpu or cuda", default="cpu"),
}


def run_checkpoints(run_dir: Path) -> dict[str, Path]:
    """Return the checkpoint of each model of a run, by role, in results.json order.

    A model's best checkpoint as recorded in results.json is used, else its ``last.ckpt``.
    """
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"run {run_dir} has no results.json; give the output folder of a finished brainkd run")
    models = json.loads(results_path.read_text())["models"]
    checkpoints = {}
    for role, entry in models.items():
        recorded = entry.get("checkpoint")
        candidate = Path(recorded) if recorded else run_dir / role / "checkpoints" / "last.ckpt"
        if not candidate.is_file():
            raise FileNotFoundError(f"the {role} checkpoint {candidate} of run {run_dir} does not exist")
        checkpoints[role] = candidate
    return checkpoints


def default_images(run_dir: Path, count: int) -> list[Path]:
    """Return ``count`` evenly spaced files of the run's test folder (Testing/ under its data root)."""
    data_root = Path(json.loads((run_dir / "results.json").read_text())["data"]["root"])
    return spread(list_input_files(data_root / SPLIT_FOLDERS["test"], setting="the run's test folder"), count)


def spread(files: list[Path], count: int) -> list[Path]:
    """Return up to ``count`` files evenly spaced over the sorted list, so class folders mix."""
    if len(files) <= count:
        return files
    positions = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[position] for position in positions]


def explain_images(models: dict[str, CheckpointModel], files: list[Path], device: str) -> tuple[list, list[str]]:
    """Return the panels (images and titles) of the figure: per file, the input and one heatmap per model."""
    panels, titles = [], []
    for path in files:
        prepared = {}
        try:
            for role, loaded in models.items():
                prepared[role] = prepare_file(path, loaded)
        except ImageReadError as error:
            log.warning("Left %s out: %s", path, error.reason)
            continue

        display = next(iter(prepared.values()))[1]
        panels.append(display)
        titles.append(f"{path.name}\ntrue: {_class_of_folder(path)}")
        for role, loaded in models.items():
            model_input = prepared[role][0].unsqueeze(0).to(device)
            probs = predict_probabilities(loaded.model, model_input)[0]
            predicted = int(probs.argmax())
            heatmap = gradcam_heatmaps(loaded.model, model_input, [predicted])[0]
            panels.append(overlay_heatmap(prepared[role][1], heatmap))
            titles.append(f"{role}: {loaded.class_names[predicted]} ({probs[predicted]:.2f})")
    return panels, titles


def _warn_if_flat(role: str, loaded: CheckpointModel, device: str) -> None:
    probe = torch.zeros(1, 1, loaded.image_size, loaded.image_size, device=device)
    height, width = feature_map_size(loaded.model, probe)
    if height * width == 1:
        log.warning(
            "The %s's Grad-CAM layer gives a 1 x 1 map at %d px inputs, so its heatmaps are flat. "
            "Explain a model trained with a larger data.image_size", role, loaded.image_size,
        )


def _class_of_folder(path: Path) -> str:
    try:
        return canonical_class(path.parent.name)
    except ValueError:
        return "unknown"


def main(argv: list[str]) -> int:
    """Explain the chosen images with every model of the run and write one PNG."""
    options = parse_options(argv, OPTIONS, USAGE)
    run_dir = Path(options["run"]).expanduser()
    checkpoints = run_checkpoints(run_dir)
    models = {role: load_checkpoint_model(path, setting=f"{role} checkpoint") for role, path in checkpoints.items()}
    for loaded in models.values():
        loaded.model.to(options["device"])

    if options["input"] is None:
        files = default_images(run_dir, options["num_images"])
    else:
        files = spread(list_input_files(options["input"]), options["num_images"])
    log.info("Explaining %d image(s) with %s", len(files), ", ".join(models))
    for role, loaded in models.items():
        _warn_if_flat(role, loaded, options["device"])

    panels, titles = explain_images(models, files, options["device"])
    if not panels:
        raise ValueError(f"none of the {len(files)} input file(s) could be read; see the warnings above")
    output = Path(options["output"] or run_dir / "explanations" / "gradcam.png")
    plot_image_grid(panels, titles, output, ncols=1 + len(models))
    log.info("Wrote %s", output)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
