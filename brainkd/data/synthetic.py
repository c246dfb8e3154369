"""Generated MRI-like slices in the Training/Testing class-folder layout.

Used by tests and by the smoke run when no real dataset is present. Each image is a
bright ellipse ("head") on a dark background. Tumour classes add a bright blob whose
place and size depend on the class, so a small model can learn the task in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from brainkd.data.folders import CLASS_NAMES, SPLIT_FOLDERS

# Blob centre (x, y) and radius as fractions of the image side; no_tumor has none. Every
# centre lies on the vertical midline, so horizontal flips keep the classes apart.
_BLOBS = {
    "glioma": (0.50, 0.45, 0.16),
    "meningioma": (0.50, 0.20, 0.09),
    "pituitary": (0.50, 0.70, 0.06),
}


def synthetic_slice(class_name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one uint8 slice of ``class_name`` with random jitter and noise."""
    image = np.zeros((size, size), dtype=np.float32)
    centre = (int(size * rng.uniform(0.45, 0.55)), int(size * rng.uniform(0.45, 0.55)))
    axes = (int(size * rng.uniform(0.30, 0.38)), int(size * rng.uniform(0.36, 0.44)))
    cv2.ellipse(image, centre, axes, 0, 0, 360, color=float(rng.uniform(90, 130)), thickness=-1)

    if class_name in _BLOBS:
        fx, fy, fraction = _BLOBS[class_name]
        blob_centre = (int(size * (fx + rng.uniform(-0.03, 0.03))), int(size * (fy + rng.uniform(-0.03, 0.03))))
        radius = max(2, int(size * fraction * rng.uniform(0.85, 1.15)))
        cv2.circle(image, blob_centre, radius, color=float(rng.uniform(210, 250)), thickness=-1)

    image += rng.normal(0.0, 8.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic_dataset(
    root: str | Path,
    train_per_class: int = 12,
    test_per_class: int = 4,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a four-class dataset of generated JPEG slices under ``root`` and return it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = {"train": train_per_class, "test": test_per_class}
    for split, folder in SPLIT_FOLDERS.items():
        for class_name in CLASS_NAMES:
            class_dir = root / folder / class_name
            class_dir.mkdir(parents=True, exist_ok=True)
            for index in range(counts[split]):
                image = synthetic_slice(class_name, size, rng)
                cv2.imwrite(str(class_dir / f"{class_name}_{index:04d}.jpg"), image)
    return root
