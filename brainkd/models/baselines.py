"""Plain CNN and multilayer perceptron that the distilled ResNeXt is compared with.

Also contains the argument checks that these models and the deep belief network share.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def check_positive(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_layer_sizes(name: str, sizes: Sequence[int]) -> None:
    """Raise ValueError unless ``sizes`` is a non-empty sequence of positive integers."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) == 0:
        raise ValueError(f"{name} must be a non-empty list of layer sizes, got {sizes!r}")
    for size in sizes:
        check_positive(f"every entry of {name}", size)


def check_dropout(dropout: float) -> None:
    """Raise ValueError unless ``dropout`` is a probability in [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


def check_input_size(input_size: int, image_size: int) -> None:
    """Raise ValueError unless the pooled ``input_size`` fits inside ``image_size``."""
    check_positive("input_size", input_size)
    check_positive("image_size", image_size)
    if input_size > image_size:
        raise ValueError(
            f"input_size={input_size} is larger than image_size={image_size}, but pooling "
            "cannot add detail. Set input_size to at most image_size"
        )


def check_flat_model_arguments(
    num_classes: int, in_chans: int, image_size: int, input_size: int, hidden: Sequence[int], dropout: float
) -> None:
    """Check the arguments shared by the models that flatten a pooled image (MLP and DBN)."""
    check_positive("num_classes", num_classes)
    check_positive("in_chans", in_chans)
    check_input_size(input_size, image_size)
    check_layer_sizes("hidden", hidden)
    check_dropout(dropout)


def check_image_batch(images: torch.Tensor, in_chans: int) -> None:
    """Raise ValueError unless ``images`` has shape (batch, in_chans, height, width)."""
    if images.ndim != 4 or images.shape[1] != in_chans:
        raise ValueError(
            f"expected images of shape (batch, {in_chans}, height, width), got "
            f"{tuple(images.shape)}. Set in_chans to the number of image channels"
        )


class PlainCNN(nn.Module):
    """Conv-BN-ReLU-maxpool blocks, global average pooling and a linear head.

    Each block halves the height and width, so ``image_size`` must be at least
    ``2 ** len(channels)``. The model accepts other input sizes that meet this bound.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        image_size: int = 128,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_positive("num_classes", num_classes)
        check_positive("in_chans", in_chans)
        check_positive("image_size", image_size)
        check_layer_sizes("channels", channels)
        check_dropout(dropout)
        min_image_size = 2 ** len(channels)
        if image_size < min_image_size:
            raise ValueError(
                f"image_size={image_size} is too small for {len(channels)} pooling blocks, "
                f"each of which halves the size. Use image_size >= {min_image_size} "
                "or fewer channels"
            )

        self.in_chans = in_chans
        self.image_size = image_size

        blocks = []
        block_in_chans = in_chans
        for block_out_chans in channels:
            blocks += [
                nn.Conv2d(block_in_chans, block_out_chans, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(block_out_chans),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=2),
            ]
            block_in_chans = block_out_chans
        self.features = nn.Sequential(*blocks)

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(block_in_chans, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map images (B x in_chans x H x W) to logits (B x num_classes)."""
        check_image_batch(images, self.in_chans)
        features = self.pool(self.features(images)).flatten(1)
        return self.head(self.dropout(features))


class MLP(nn.Module):
    """Multilayer perceptron on the image average-pooled to ``input_size`` x ``input_size``.

    Each hidden layer is Linear, ReLU and Dropout, and a linear head follows the last one.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        image_size: int = 128,
        input_size: int = 32,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_flat_model_arguments(num_classes, in_chans, image_size, input_size, hidden, dropout)

        self.in_chans = in_chans
        self.image_size = image_size

        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(input_size), nn.Flatten()]
        layer_in_features = in_chans * input_size * input_size
        for layer_out_features in hidden:
            layers += [
                nn.Linear(layer_in_features, layer_out_features),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
            layer_in_features = layer_out_features
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(layer_in_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map images (B x in_chans x H x W) to logits (B x num_classes)."""
        check_image_batch(images, self.in_chans)
        return self.head(self.layers(images))
