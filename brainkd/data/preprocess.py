"""The method's preprocessing as pure functions on grayscale arrays.

The order is: brain mask by intensity threshold, crop to the mask, non-local-means
denoising, min-max normalisation to [0, 1], then resizing to a square of ``image_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from brainkd import checks


@dataclass(frozen=True)
class PreprocessSettings:
    """Settings of the preprocessing; every field is part of the cache key."""

    image_size: int = 224
    threshold: str | float = "otsu"
    opening_radius: int = 2
    min_mask_fraction: float = 0.02
    crop_margin: int = 4
    apply_mask: bool = True
    denoise_strength: float = 10.0
    denoise_template_window: int = 7
    denoise_search_window: int = 21
    # Denoising cost grows with the pixel count, so images are first shrunk until their
    # longer side is at most this many times ``image_size`` (0 keeps the full size).
    working_scale: float = 2.0
    keep_aspect: bool = True

    def __post_init__(self) -> None:
        # Only checked, never converted: the values as given form the cache key.
        prefix = "data.preprocess."
        if self.threshold != "otsu":
            if isinstance(self.threshold, str):
                raise ValueError(f"{prefix}threshold must be 'otsu' or a grey level 0-255, got {self.threshold!r}")
            checks.number(f"{prefix}threshold", self.threshold, 0, 255)
        checks.integer(f"{prefix}opening_radius", self.opening_radius, 0)
        checks.number(f"{prefix}min_mask_fraction", self.min_mask_fraction, 0, 1, high_open=True)
        checks.integer(f"{prefix}crop_margin", self.crop_margin, 0)
        checks.flag(f"{prefix}apply_mask", self.apply_mask)
        checks.number(f"{prefix}denoise_strength", self.denoise_strength, 0)
        # OpenCV documents odd window sides for fastNlMeansDenoising.
        for key in ("denoise_template_window", "denoise_search_window"):
            if checks.integer(prefix + key, getattr(self, key), 1) % 2 == 0:
                raise ValueError(f"{prefix}{key} must be odd, got {getattr(self, key)}")
        # Below 1 the image would be shrunk under image_size and enlarged again afterwards.
        if checks.number(f"{prefix}working_scale", self.working_scale, 0) != 0 and self.working_scale < 1:
            raise ValueError(f"{prefix}working_scale must be 0 (keep the full size) or at least 1, got {self.working_scale}")
        checks.flag(f"{prefix}keep_aspect", self.keep_aspect)


@dataclass
class PreprocessResult:
    """The preprocessed image and what happened on the way."""

    image: np.ndarray
    mask_fallback: bool


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a decoded image (gray, RGB, RGBA; 8 or 16 bit) to 2-D uint8 gray."""
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if image.shape[2] == 3:
            image = image.astype(np.float32).mean(axis=2)
        elif image.shape[2] == 1:
            image = image[:, :, 0]
        else:
            raise ValueError(f"unsupported channel count {image.shape[2]}")
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D image array, got shape {image.shape}")

    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round((image - low) * (255.0 / (high - low))).astype(np.uint8)


def shrink_to_working_size(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale with area interpolation so the longer side is at most ``max_side``."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def otsu_threshold(image: np.ndarray) -> float:
    """Return Otsu's threshold of a uint8 image."""
    threshold, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(threshold)


def brain_mask(image: np.ndarray, threshold: str | float = "otsu", opening_radius: int = 2) -> np.ndarray:
    """Compute the mask M = I > T, cleaned up.

    T is Otsu's threshold when ``threshold == "otsu"``, else the given grey level (0-255).
    Clean-up: a morphological opening removes specks, the largest connected component is
    kept and its holes are filled. Returns a boolean array, possibly all False.
    """
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"data.preprocess.threshold must be 'otsu' or a number, got {threshold!r}")
        threshold = otsu_threshold(image)
    mask = image > float(threshold)

    if opening_radius > 0:
        structure = ndimage.generate_binary_structure(2, 1)
        mask = ndimage.binary_opening(mask, structure=structure, iterations=opening_radius)

    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(sizes.argmax())
    return ndimage.binary_fill_holes(mask)


def crop_to_mask(image: np.ndarray, mask: np.ndarray, margin: int = 0) -> np.ndarray:
    """Crop an image to the bounding box of a non-empty mask, widened by ``margin`` pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("cannot crop to an empty mask")
    top = max(0, rows[0] - margin)
    bottom = min(image.shape[0], rows[-1] + 1 + margin)
    left = max(0, cols[0] - margin)
    right = min(image.shape[1], cols[-1] + 1 + margin)
    return image[top:bottom, left:right]


def denoise(image: np.ndarray, strength: float, template_window: int = 7, search_window: int = 21) -> np.ndarray:
    """Apply OpenCV's non-local-means denoising to a uint8 image (strength 0 skips it)."""
    if strength <= 0:
        return image
    return cv2.fastNlMeansDenoising(image, None, float(strength), template_window, search_window)


def min_max_normalize(image: np.ndarray) -> np.ndarray:
    """Scale intensities to [0, 1] as float32; a constant image becomes all zeros."""
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image)
    return (image - low) / (high - low)


def resize_square(image: np.ndarray, size: int, keep_aspect: bool = True) -> np.ndarray:
    """Resize to ``size`` x ``size``; with ``keep_aspect`` the image is first zero-padded to a square."""
    if keep_aspect:
        height, width = image.shape
        side = max(height, width)
        padded = np.zeros((side, side), dtype=image.dtype)
        top, left = (side - height) // 2, (side - width) // 2
        padded[top : top + height, left : left + width] = image
        image = padded
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def preprocess_image(
    gray: np.ndarray, settings: PreprocessSettings, steps: dict[str, np.ndarray] | None = None
) -> PreprocessResult:
    """Run the whole preprocessing on a 2-D uint8 image and return a float32 image in [0, 1].

    A ``steps`` dict, if given, receives the intermediate images for figures: ``original``
    (at working size), ``mask``, ``denoised`` (masked, cropped and denoised) and ``normalised``.
    """
    max_side = round(settings.working_scale * settings.image_size) if settings.working_scale > 0 else 0
    image = shrink_to_working_size(gray, max_side)

    mask = brain_mask(image, settings.threshold, settings.opening_radius)
    if steps is not None:
        steps.update(original=image, mask=mask)
    # A mask that keeps almost nothing is a failed threshold, not a tiny brain. A constant
    # image has no foreground to separate, whatever mask the threshold returns.
    mask_fallback = bool(mask.mean() < settings.min_mask_fraction or image.min() == image.max())
    if not mask_fallback:
        if settings.apply_mask:
            image = np.where(mask, image, 0).astype(np.uint8)
        image = crop_to_mask(image, mask, settings.crop_margin)

    image = denoise(image, settings.denoise_strength, settings.denoise_template_window, settings.denoise_search_window)
    if steps is not None:
        steps["denoised"] = image
    image = min_max_normalize(image)
    image = np.clip(resize_square(image, settings.image_size, settings.keep_aspect), 0.0, 1.0)
    if steps is not None:
        steps["normalised"] = image
    return PreprocessResult(image=image, mask_fallback=bool(mask_fallback))
