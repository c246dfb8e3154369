"""Each preprocessing step on small hand-made arrays."""

import numpy as np
import pytest

from brainkd.data.preprocess import (
    PreprocessSettings,
    brain_mask,
    crop_to_mask,
    denoise,
    min_max_normalize,
    otsu_threshold,
    preprocess_image,
    resize_square,
    shrink_to_working_size,
    to_gray_uint8,
)


def disc_image(size=64, radius=20, inside=150, outside=10):
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), outside, dtype=np.uint8)
    image[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2] = inside
    return image


def test_otsu_separates_two_levels():
    threshold = otsu_threshold(disc_image())
    assert 10 <= threshold < 150


def test_mask_is_threshold_of_intensity():
    image = disc_image()
    mask = brain_mask(image, threshold=100, opening_radius=0)
    assert np.array_equal(mask, image > 100)


def test_mask_keeps_largest_component():
    image = disc_image()
    image[2:5, 2:5] = 200
    mask = brain_mask(image, threshold=100, opening_radius=0)
    assert not mask[3, 3]
    assert mask[32, 32]


def test_mask_fills_holes():
    image = disc_image()
    image[30:34, 30:34] = 0
    mask = brain_mask(image, threshold=100, opening_radius=0)
    assert mask[31, 31]


def test_opening_removes_thin_lines():
    image = disc_image()
    image[60, :] = 255
    mask = brain_mask(image, threshold=100, opening_radius=1)
    assert not mask[60, 5]


def test_mask_of_black_image_is_empty():
    mask = brain_mask(np.zeros((32, 32), dtype=np.uint8))
    assert not mask.any()


def test_invalid_threshold_names_key():
    with pytest.raises(ValueError, match="data.preprocess.threshold"):
        brain_mask(disc_image(), threshold="median")


def test_crop_to_mask_bounds():
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 8:20] = True
    cropped = crop_to_mask(np.ones((20, 30)), mask, margin=2)
    assert cropped.shape == (9, 16)


def test_crop_to_empty_mask_raises():
    with pytest.raises(ValueError, match="empty mask"):
        crop_to_mask(np.ones((4, 4)), np.zeros((4, 4), dtype=bool))


def test_denoise_lowers_noise():
    rng = np.random.default_rng(0)
    clean = np.full((48, 48), 120, dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
    denoised = denoise(noisy, strength=15)
    assert np.abs(denoised.astype(float) - 120).mean() < np.abs(noisy.astype(float) - 120).mean() / 2


def test_denoise_strength_zero_is_identity():
    image = disc_image()
    assert denoise(image, strength=0) is image


def test_min_max_spans_unit_interval():
    normalized = min_max_normalize(np.array([[10, 20], [30, 50]], dtype=np.uint8))
    assert normalized.min() == 0.0
    assert normalized.max() == 1.0
    assert normalized[0, 1] == pytest.approx(0.25)


def test_min_max_of_constant_is_zero_not_nan():
    normalized = min_max_normalize(np.full((8, 8), 77, dtype=np.uint8))
    assert not np.isnan(normalized).any()
    assert (normalized == 0).all()


def test_resize_square_pads_to_keep_aspect():
    image = np.ones((10, 20), dtype=np.float32)
    resized = resize_square(image, 16, keep_aspect=True)
    assert resized.shape == (16, 16)
    assert resized[0, 8] == 0.0
    assert resized[8, 8] == pytest.approx(1.0)


def test_resize_square_stretches_without_aspect():
    resized = resize_square(np.ones((10, 20), dtype=np.float32), 16, keep_aspect=False)
    assert resized.min() == pytest.approx(1.0)


def test_shrink_limits_longer_side():
    shrunk = shrink_to_working_size(np.zeros((300, 600), dtype=np.uint8), 100)
    assert shrunk.shape == (50, 100)


def test_gray_conversion_of_16_bit_rgba():
    rgba = np.zeros((4, 4, 4), dtype=np.uint16)
    rgba[..., :3] = 1000
    rgba[0, 0, :3] = 3000
    gray = to_gray_uint8(rgba)
    assert gray.dtype == np.uint8
    assert gray[0, 0] == 255
    assert gray[1, 1] == 0


def test_pipeline_output_range_and_shape():
    result = preprocess_image(disc_image(128), PreprocessSettings(image_size=32))
    assert result.image.shape == (32, 32)
    assert result.image.min() >= 0.0
    assert result.image.max() == pytest.approx(1.0)
    assert not result.mask_fallback


def test_pipeline_falls_back_on_black_image():
    result = preprocess_image(np.zeros((64, 64), dtype=np.uint8), PreprocessSettings(image_size=16))
    assert result.mask_fallback
    assert not np.isnan(result.image).any()


def test_pipeline_crops_background():
    # A small bright disc in a large dark frame fills most of the output after cropping.
    image = disc_image(size=200, radius=30)
    settings = PreprocessSettings(image_size=32, denoise_strength=0, working_scale=0)
    result = preprocess_image(image, settings)
    assert (result.image > 0.5).mean() > 0.5
