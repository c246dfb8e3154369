"""Predict the class of image files with a trained checkpoint and write the probabilities to a CSV.

    python -m brainkd.predict checkpoint=outputs/<run>/student/checkpoints/last.ckpt input=scans/

Each image is preprocessed with the settings stored in the checkpoint, as in training.
Files that cannot be read get a row with the reason in the ``error`` column.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch

from brainkd.cli import Option, parse_options, positive_int, run_tool
from brainkd.data.reading import ImageReadError
from brainkd.inference import CheckpointModel, list_input_files, load_checkpoint_model, predict_probabilities, prepare_file

log = logging.getLogger(__name__)

USAGE = "usage: python -m brainkd.predict checkpoint=PATH input=FILE_OR_FOLDER [output=predictions.csv] [key=value ...]"
OPTIONS = {
    "checkpoint": Option("brainkd checkpoint (.ckpt) to predict with"),
    "input": Option("an image file, or a folder whose files are all read (recursively, hidden files left out)"),
    "output": Option("CSV file to write", default="predictions.csv"),
    "batch_size": Option("images per forward pass", default=32, parse=positive_int),
    "device": Option("torch device to run on, such as cpu or cuda", default="cpu"),
}


def predict_files(loaded: CheckpointModel, files: list[Path], batch_size: int, device: str) -> list[dict]:
    """Return one CSV row per file, in the order of ``files``.

    A row contains ``path``, ``predicted_class``, ``probability_<class>`` per class and
    ``error``, which is empty for predicted files and the reason for unreadable ones.
    """
    model = loaded.model.to(device)
    rows: list[dict] = []
    pending: list[tuple[dict, torch.Tensor]] = []

    def flush() -> None:
        probabilities = predict_probabilities(model, torch.stack([image for _, image in pending]).to(device))
        for (row, _), probs in zip(pending, probabilities):
            row["predicted_class"] = loaded.class_names[int(probs.argmax())]
            row.update({f"probability_{name}": f"{value:.6f}" for name, value in zip(loaded.class_names, probs)})
        pending.clear()

    for path in files:
        row = {"path": str(path), "error": ""}
        rows.append(row)
        try:
            model_input, _ = prepare_file(path, loaded)
        except ImageReadError as error:
            row["error"] = error.reason
            continue
        pending.append((row, model_input))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return rows


def write_csv(rows: list[dict], class_names: list[str], path: Path) -> None:
    """Write the prediction rows with a fixed column order; unreadable files leave the class columns empty."""
    columns = ["path", "predicted_class", *(f"probability_{name}" for name in class_names), "error"]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Python decodes a file name that is not valid UTF-8 with surrogate escapes. Writing them
    # as \udcXX text keeps the CSV valid UTF-8 and the bad bytes visible.
    with path.open("w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str]) -> int:
    """Predict every input file and write the CSV; exit code 0 even when some files were unreadable."""
    options = parse_options(argv, OPTIONS, USAGE)
    loaded = load_checkpoint_model(options["checkpoint"])
    files = list_input_files(options["input"])
    log.info("Predicting %d file(s) with %s (%s)", len(files), loaded.metadata["arch"], loaded.path)

    rows = predict_files(loaded, files, options["batch_size"], options["device"])
    output = Path(options["output"])
    write_csv(rows, loaded.class_names, output)

    failed = [row for row in rows if row["error"]]
    if failed:
        listing = "\n".join(f"  {row['path']}: {row['error']}" for row in failed)
        log.warning("Could not read %d of %d file(s); their rows in the CSV give the reason:\n%s", len(failed), len(rows), listing)
    log.info("Wrote predictions of %d file(s) to %s", len(rows) - len(failed), output)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
