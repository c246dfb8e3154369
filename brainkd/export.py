"""Export a trained checkpoint to ONNX and check ONNX Runtime against PyTorch on real images.

    python -m brainkd.export checkpoint=outputs/<run>/student/checkpoints/last.ckpt format=onnx

The ONNX graph takes standardised N x 1 x S x S float32 images (input ``images``, N free)
and returns N x C logits (output ``logits``). Its metadata contains the class names, the
preprocessing settings, ``mean`` and ``std`` as JSON, so that callers can prepare inputs
as brainkd does. The check runs both models on the CPU in float32 and fails (exit code 1)
when the largest absolute logit difference exceeds ``tolerance``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from brainkd.cli import Option, parse_options, positive_int, run_tool
from brainkd.data.folders import SPLIT_FOLDERS
from brainkd.data.reading import ImageReadError
from brainkd.inference import CheckpointModel, list_input_files, load_checkpoint_model, prepare_file

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
USAGE = "usage: python -m brainkd.export checkpoint=PATH [format=onnx] [output=PATH] [key=value ...]"
OPTIONS = {
    "checkpoint": Option("brainkd checkpoint (.ckpt) to export"),
    "format": Option(f"export format, one of {', '.join(FORMATS)}", default="onnx"),
    "output": Option("file to write", default=None, default_help="the checkpoint path with the format's suffix"),
    "images": Option(
        "image file or folder for the parity check", default=None,
        default_help="Testing/ of the data root in the results.json two folders above the checkpoint",
    ),
    "num_images": Option("images in the parity check, evenly spaced over the folder", default=16, parse=positive_int),
    "tolerance": Option("largest accepted absolute logit difference between ONNX Runtime and PyTorch", default=1e-4, parse=float),
    "opset": Option("ONNX opset version", default=18, parse=positive_int),
}


def export_onnx(loaded: CheckpointModel, example: torch.Tensor, path: Path, opset: int) -> Path:
    """Write the model as one ONNX file with a dynamic batch axis and brainkd's metadata."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        loaded.model.cpu().float().eval(),
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        dynamo=True,
        external_data=False,
    )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, export_metadata(loaded))
    onnx.save(model, str(path))
    return path


def export_metadata(loaded: CheckpointModel) -> dict[str, str]:
    """Return the ONNX metadata entries: what a caller needs to prepare inputs and read outputs."""
    return {
        "brainkd_arch": str(loaded.metadata["arch"]),
        "brainkd_class_names": json.dumps(loaded.class_names),
        "brainkd_image_size": str(loaded.image_size),
        "brainkd_mean": repr(loaded.mean),
        "brainkd_std": repr(loaded.std),
        "brainkd_preprocess": json.dumps(loaded.metadata["preprocess"], sort_keys=True),
        "brainkd_checkpoint": loaded.path,
    }


def max_logit_difference(onnx_path: Path, loaded: CheckpointModel, images: torch.Tensor) -> float:
    """Run ONNX Runtime (CPU) and PyTorch (CPU, float32) on ``images``; return the largest absolute logit difference.

    The images go through once as one batch and once one at a time, which also checks
    the dynamic batch axis.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = loaded.model.cpu().float().eval()
    with torch.no_grad():
        expected = model(images).numpy()
    batched = session.run(["logits"], {"images": images.numpy()})[0]
    single = np.concatenate([session.run(["logits"], {"images": image[None].numpy()})[0] for image in images])
    return float(max(np.abs(batched - expected).max(), np.abs(single - expected).max()))


def check_images(loaded: CheckpointModel, images_option: str | None, count: int) -> torch.Tensor:
    """Prepare up to ``count`` real images for the parity check, evenly spaced over the input folder."""
    if images_option is None:
        results_path = Path(loaded.path).resolve().parents[2] / "results.json"
        if not results_path.is_file():
            raise FileNotFoundError(
                f"found no results.json at {results_path} to locate test images; give images=FILE_OR_FOLDER"
            )
        images_option = str(Path(json.loads(results_path.read_text())["data"]["root"]) / SPLIT_FOLDERS["test"])
    files = list_input_files(images_option, setting="images")
    positions = np.unique(np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int))

    prepared = []
    for position in positions:
        try:
            prepared.append(prepare_file(files[position], loaded)[0])
        except ImageReadError as error:
            log.warning("Left %s out of the parity check: %s", files[position], error.reason)
    if not prepared:
        raise ValueError(f"none of the {len(positions)} chosen files under {images_option} could be read")
    return torch.stack(prepared)


def main(argv: list[str]) -> int:
    """Export the checkpoint, then compare ONNX Runtime with PyTorch; exit code 1 if they differ too much."""
    options = parse_options(argv, OPTIONS, USAGE)
    if options["format"] not in FORMATS:
        raise ValueError(f"format={options['format']!r} is not supported; use one of {', '.join(FORMATS)}")
    loaded = load_checkpoint_model(options["checkpoint"])
    images = check_images(loaded, options["images"], options["num_images"])
    output = Path(options["output"] or Path(options["checkpoint"]).with_suffix(".onnx"))

    log.info("Exporting %s to %s (opset %d)", loaded.metadata["arch"], output, options["opset"])
    # A batch of two: torch.export specialises an axis whose example size is 1.
    export_onnx(loaded, images[:1].repeat(2, 1, 1, 1), output, options["opset"])
    difference = max_logit_difference(output, loaded, images)
    passed = difference <= options["tolerance"]
    log.log(
        logging.INFO if passed else logging.ERROR,
        "Parity check on %d preprocessed image(s): max |ONNX Runtime - PyTorch| logit difference %.3g, tolerance %.3g: %s",
        len(images), difference, options["tolerance"], "passed" if passed else "FAILED",
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
