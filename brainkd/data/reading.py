"""Decode image files of any common format into 2-D uint8 grayscale arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from brainkd.data.preprocess import to_gray_uint8

# Smaller images carry no usable anatomy and break the 7x7 denoising template.
MIN_IMAGE_SIDE = 8


class ImageReadError(ValueError):
    """A file under a class folder that is not a usable image."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_gray(path: str | Path) -> np.ndarray:
    """Decode an image, apply its EXIF orientation and return it as 2-D uint8 gray.

    Raises ImageReadError with the reason for empty, truncated, non-image or tiny files,
    and for floating-point images with NaN or infinite pixels.
    """
    path = str(path)
    try:
        if Path(path).stat().st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                array = _pil_to_array(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image format that Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageReadError(path, f"unreadable image ({error})") from None

    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageReadError(path, "image contains NaN or infinite pixel values")
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageReadError(
            path, f"image is {array.shape[1]}x{array.shape[0]} pixels, below the minimum side of {MIN_IMAGE_SIDE}"
        )
    return to_gray_uint8(array)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image, dtype=np.int64).astype(np.float32)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return np.asarray(image)
