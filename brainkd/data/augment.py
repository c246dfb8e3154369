"""Training augmentation, applied to cached images on every epoch."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from brainkd import checks

# Each option's accepted bounds: (low, high, high bound excluded).
AUGMENT_BOUNDS = {
    "horizontal_flip": (0.0, 1.0, False),       # a probability
    "rotation_degrees": (0.0, 180.0, False),
    "intensity_scale": (0.0, 1.0, True),        # a factor of 1 - scale must stay positive
    "intensity_shift": (0.0, 1.0, False),       # intensities lie in [0, 1]
}


class IntensityJitter(torch.nn.Module):
    """Scale and shift intensities by random factors: x * (1 + a) + b, a and b uniform."""

    def __init__(self, scale: float = 0.1, shift: float = 0.05):
        super().__init__()
        self.scale = scale
        self.shift = shift

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        factor = 1.0 + (torch.rand(()) * 2 - 1) * self.scale
        offset = (torch.rand(()) * 2 - 1) * self.shift
        return (image * factor + offset).clamp(0.0, 1.0)


def build_train_augmentation(
    horizontal_flip: float = 0.5,
    rotation_degrees: float = 10.0,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.05,
) -> v2.Compose | None:
    """Build the augmentation for 1 x H x W float images in [0, 1], or return None when every step is off."""
    steps: list[torch.nn.Module] = []
    if horizontal_flip > 0:
        steps.append(v2.RandomHorizontalFlip(p=horizontal_flip))
    if rotation_degrees > 0:
        steps.append(v2.RandomRotation(degrees=rotation_degrees, interpolation=v2.InterpolationMode.BILINEAR))
    if intensity_scale > 0 or intensity_shift > 0:
        steps.append(IntensityJitter(intensity_scale, intensity_shift))
    return v2.Compose(steps) if steps else None


def check_augment_options(options: dict) -> dict:
    """Return ``data.augment`` as a plain dict after checking its keys and each value's range."""
    unknown = sorted(set(options) - set(AUGMENT_BOUNDS))
    if unknown:
        raise ValueError(
            f"unknown key(s) data.augment.{', '.join(unknown)}; accepted keys: {', '.join(AUGMENT_BOUNDS)}"
        )
    for key, value in options.items():
        low, high, high_open = AUGMENT_BOUNDS[key]
        checks.number(f"data.augment.{key}", value, low, high, high_open=high_open)
    return dict(options)
