"""Grad-CAM heatmaps of brainkd's classifiers, computed with the pytorch-grad-cam package."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from brainkd.models.baselines import PlainCNN


def default_target_layer(model: nn.Module) -> nn.Module:
    """Pick the layer whose activations Grad-CAM weighs: the last feature map before global pooling.

    PlainCNN: the ReLU of its last convolution block, before that block's max pooling.
    timm models: the module of the last ``feature_info`` entry (``layer4`` of ResNeXt-50,
    ``final_conv`` of resnext26ts). Other models: their last ``nn.Conv2d``.
    """
    if isinstance(model, PlainCNN):
        return [module for module in model.features if isinstance(module, nn.ReLU)][-1]
    feature_info = getattr(model, "feature_info", None)
    if feature_info:
        return model.get_submodule(feature_info[-1]["module"])
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"{type(model).__name__} has no convolution layer, so Grad-CAM cannot explain it")
    return convolutions[-1]


def feature_map_size(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """Return the height and width of the target layer's output for ``images``.

    At 1 x 1, Grad-CAM has no spatial detail and every heatmap is flat.
    """
    sizes = []

    def record_size(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        sizes.append(output.shape[-2:])

    handle = default_target_layer(model).register_forward_hook(record_size)
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        handle.remove()
    return tuple(int(side) for side in sizes[-1])


def gradcam_heatmaps(model: nn.Module, images: torch.Tensor, classes: Sequence[int]) -> np.ndarray:
    """Return one Grad-CAM heatmap per image for the given class, as N x H x W values in [0, 1].

    Each heatmap is scaled to the input size and to [0, 1] on its own; an all-zero map
    means no positive evidence for the class at the target layer.
    """
    if len(classes) != len(images):
        raise ValueError(f"got {len(images)} images but {len(classes)} target classes")
    model.eval()
    targets = [ClassifierOutputTarget(int(class_index)) for class_index in classes]
    with GradCAM(model=model, target_layers=[default_target_layer(model)]) as cam:
        return cam(input_tensor=images, targets=targets)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, image_weight: float = 0.6) -> np.ndarray:
    """Blend a heatmap (jet colour map) over a gray image in [0, 1]; returns H x W x 3 uint8 RGB."""
    rgb = np.repeat(np.clip(image, 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)
    return show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=image_weight)
