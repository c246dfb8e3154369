"""Generate a messy dataset in the Training/Testing layout, with the outcome expected for each file.

``make_messy_dataset`` plants the kinds of trouble that real downloads contain: empty,
truncated and corrupt files, lying extensions, non-image files, operating-system clutter,
non-ASCII names, every common pixel format, EXIF-rotated JPEGs, tiny and blank images.
It returns a ``MessyDataset`` that lists which files must be used, which must be
reported as bad (with a fragment of the reason) and which must be ignored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# EXIF tag 0x0112 (Orientation); value 6 means "rotate 90 degrees clockwise to display".
EXIF_ORIENTATION_TAG = 0x0112
EXIF_ROTATE_CLOCKWISE = 6

CLASS_FOLDERS = {
    "glioma": "glioma_tumor",
    "meningioma": "Meningioma",
    "no_tumor": "No Tumor",
    "pituitary": "pituitary_tumor",
}


@dataclass
class MessyDataset:
    """A generated dataset root and the outcome expected for each planted file.

    Paths are relative to ``root`` in POSIX form. ``bad`` maps each file that must be
    reported to a fragment of the reason. ``fallback`` lists the used files whose brain
    mask must fall back to the whole image.
    """

    root: Path
    used: set[str] = field(default_factory=set)
    bad: dict[str, str] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)
    fallback: set[str] = field(default_factory=set)
    exif_rotated: str = ""


def head_slice(size: int = 48, seed: int = 0) -> np.ndarray:
    """Draw an ellipse filled with a smooth random texture on a dark background as a uint8 slice.

    The texture differs with ``seed``, so no two slices are perceptual near-duplicates.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    inside = ((rows - size / 2) / (size * 0.42)) ** 2 + ((cols - size / 2) / (size * 0.42)) ** 2 <= 1.0
    coarse = rng.uniform(60.0, 250.0, (4, 4)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))
    image = np.where(inside, texture, 5.0) + rng.normal(0.0, 4.0, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, **save_options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90, **save_options)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def exif_rotated_jpeg() -> bytes:
    """Return a 48 x 24 (wide) JPEG whose left half is bright, tagged to be shown rotated clockwise.

    With its EXIF orientation applied, the image is 24 wide and 48 tall with the bright half on top.
    """
    image = np.full((24, 48), 20, dtype=np.uint8)
    image[:, :24] = 230
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = EXIF_ROTATE_CLOCKWISE
    return jpeg_bytes(image, exif=exif.tobytes())


def _write(root: Path, relpath: str, payload: bytes) -> str:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return relpath


def _good_images(dataset: MessyDataset, split_folder: str, class_name: str, count: int, seed: int) -> None:
    for index in range(count):
        relpath = f"{split_folder}/{CLASS_FOLDERS[class_name]}/{class_name}_{index:02d}.jpg"
        dataset.used.add(_write(dataset.root, relpath, jpeg_bytes(head_slice(seed=seed + index))))


def make_messy_dataset(
    root: str | Path,
    train_per_class: int = 4,
    test_per_class: int = 2,
    missing_test_class: str | None = "pituitary",
    with_testing: bool = True,
) -> MessyDataset:
    """Write the messy dataset under ``root`` and return what each file should become.

    ``missing_test_class`` leaves that class out of ``Testing/``.
    ``with_testing=False`` writes no ``Testing/`` folder at all.
    """
    dataset = MessyDataset(root=Path(root))
    root = dataset.root
    for position, class_name in enumerate(CLASS_FOLDERS):
        _good_images(dataset, "Training", class_name, train_per_class, seed=100 * position)
        if with_testing and class_name != missing_test_class:
            _good_images(dataset, "Testing", class_name, test_per_class, seed=100 * position + 50)

    glioma = f"Training/{CLASS_FOLDERS['glioma']}"
    meningioma = f"Training/{CLASS_FOLDERS['meningioma']}"
    no_tumor = f"Training/{CLASS_FOLDERS['no_tumor']}"
    pituitary = f"Training/{CLASS_FOLDERS['pituitary']}"
    slice_jpeg = jpeg_bytes(head_slice(seed=7))

    # Files that must be reported as bad, with a fragment of the reason.
    dataset.bad[_write(root, f"{glioma}/empty.jpg", b"")] = "empty file"
    dataset.bad[_write(root, f"{glioma}/truncated.jpg", slice_jpeg[: len(slice_jpeg) // 2])] = "unreadable image"
    corrupt = bytearray(slice_jpeg)
    corrupt[200:] = bytes(len(corrupt) - 200)
    dataset.bad[_write(root, f"{glioma}/zeroed_after_header.jpg", bytes(corrupt))] = "unreadable image"
    dataset.bad[_write(root, f"{meningioma}/notes_named_as_image.jpg", b"scan notes, not pixels\n")] = "not an image"
    dataset.bad[_write(root, f"{meningioma}/labels.csv", b"file,label\na.jpg,meningioma\n")] = "not an image"
    dataset.bad[_write(root, f"{no_tumor}/tiny.png", png_bytes(Image.new("L", (3, 3), 128)))] = "minimum side"
    float_with_nan = np.full((32, 32), 0.5, dtype=np.float32)
    float_with_nan[:4, :4] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(float_with_nan, mode="F").save(buffer, format="TIFF")
    dataset.bad[_write(root, f"{no_tumor}/float_with_nan.tif", buffer.getvalue())] = "NaN"

    # Files that must be used, whatever their name or pixel format.
    head = head_slice(seed=11)
    dataset.used.add(_write(root, f"{glioma}/png_inside.jpg", png_bytes(Image.fromarray(head))))
    dataset.used.add(_write(root, f"{glioma}/schnitt_größe_脑.jpg", jpeg_bytes(head_slice(seed=12))))
    dataset.used.add(_write(root, f"{meningioma}/rgb.png", png_bytes(Image.fromarray(np.dstack([head] * 3)))))
    rgba = np.dstack([head] * 3 + [np.full_like(head, 255)])
    dataset.used.add(_write(root, f"{meningioma}/rgba.png", png_bytes(Image.fromarray(rgba, mode="RGBA"))))
    sixteen_bit = Image.fromarray(head.astype(np.uint16) * 257).convert("I;16")
    dataset.used.add(_write(root, f"{pituitary}/sixteen_bit.png", png_bytes(sixteen_bit)))
    dataset.used.add(_write(root, f"{pituitary}/nested/deeper/slice.jpg", jpeg_bytes(head_slice(seed=13))))
    dataset.exif_rotated = _write(root, f"{pituitary}/exif_rotated.jpg", exif_rotated_jpeg())
    dataset.used.add(dataset.exif_rotated)
    dataset.used.add(_write(root, f"{no_tumor}/smallest_allowed.png", png_bytes(Image.fromarray(head_slice(size=8)))))

    # Used, but with no foreground for the brain mask to find.
    for name, value in (("all_black.png", 0), ("constant_grey.png", 128), ("all_white.png", 255)):
        relpath = _write(root, f"{no_tumor}/{name}", png_bytes(Image.new("L", (40, 40), value)))
        dataset.used.add(relpath)
        dataset.fallback.add(relpath)

    # Hidden files and folders, and operating-system clutter: never listed.
    dataset.ignored.add(_write(root, f"{glioma}/.DS_Store", b"\x00\x00\x00\x01Bud1"))
    dataset.ignored.add(_write(root, f"{meningioma}/Thumbs.db", b"\xd0\xcf\x11\xe0"))
    dataset.ignored.add(_write(root, f"{meningioma}/desktop.ini", b"[.ShellClassInfo]\n"))
    dataset.ignored.add(_write(root, f"{no_tumor}/.ipynb_checkpoints/slice-checkpoint.jpg", slice_jpeg))
    dataset.ignored.add(_write(root, f"{pituitary}/._exif_rotated.jpg", b"\x00\x05\x16\x07"))
    dataset.ignored.add(_write(root, "Training/.hidden_class/image.jpg", slice_jpeg))
    dataset.ignored.add(_write(root, "Training/__MACOSX/glioma_tumor/image.jpg", b"\x00\x05\x16\x07"))
    return dataset


def make_plain_dataset(
    root: str | Path,
    classes: tuple[str, ...] = tuple(CLASS_FOLDERS),
    train_per_class: int = 4,
    test_per_class: int = 2,
) -> Path:
    """Write good JPEG slices of ``classes`` into Training/ and Testing/ and return ``root``."""
    dataset = MessyDataset(root=Path(root))
    for position, class_name in enumerate(classes):
        _good_images(dataset, "Training", class_name, train_per_class, seed=100 * position)
        _good_images(dataset, "Testing", class_name, test_per_class, seed=100 * position + 50)
    return dataset.root
