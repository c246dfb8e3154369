"""Deep belief network baseline made of RBMs pre-trained with contrastive divergence."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from brainkd.models.baselines import check_flat_model_arguments, check_image_batch, check_positive

logger = logging.getLogger(__name__)


class RBM(nn.Module):
    """Bernoulli-Bernoulli restricted Boltzmann machine.

    ``p(h = 1 | v) = sigmoid(v W^T + b_h)`` and ``p(v = 1 | h) = sigmoid(h W + b_v)``, with
    ``weight`` W of shape (num_hidden, num_visible), the layout of ``nn.Linear``.

    One CD-k update on a batch v0 of B rows samples h0 from p(h | v0) and runs k Gibbs
    steps. Each step sets v to p(v | h), the probabilities rather than a sample, and then
    samples h from p(h | v). With vk the visible probabilities after step k:

        W   += lr * (p(h | v0)^T v0 - p(h | vk)^T vk) / B
        b_v += lr * mean over the batch of (v0 - vk)
        b_h += lr * mean over the batch of (p(h | v0) - p(h | vk))

    Probabilities in place of binary samples for vk and for the hidden statistics lower the
    sampling noise of the update.
    """

    def __init__(self, num_visible: int, num_hidden: int) -> None:
        super().__init__()
        check_positive("num_visible", num_visible)
        check_positive("num_hidden", num_hidden)

        self.num_visible = num_visible
        self.num_hidden = num_hidden
        self.weight = nn.Parameter(0.01 * torch.randn(num_hidden, num_visible))
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))

    def hidden_probabilities(self, visible: torch.Tensor) -> torch.Tensor:
        """Compute p(h = 1 | v) for a batch of visible vectors (B x num_visible)."""
        return torch.sigmoid(F.linear(visible, self.weight, self.hidden_bias))

    def visible_probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        """Compute p(v = 1 | h) for a batch of hidden vectors (B x num_hidden)."""
        return torch.sigmoid(F.linear(hidden, self.weight.t(), self.visible_bias))

    def sample_hidden(self, visible: torch.Tensor) -> torch.Tensor:
        """Draw binary hidden states from p(h | v)."""
        return torch.bernoulli(self.hidden_probabilities(visible))

    def sample_visible(self, hidden: torch.Tensor) -> torch.Tensor:
        """Draw binary visible states from p(v | h)."""
        return torch.bernoulli(self.visible_probabilities(hidden))

    @torch.no_grad()
    def contrastive_divergence(self, v0: torch.Tensor, k: int, lr: float) -> float:
        """Apply one CD-k update to the parameters in place (see the class docstring).

        ``v0`` contains values in [0, 1] with shape (B x num_visible). Returns the mean
        squared error between v0 and vk, measured before the update.
        """
        self._check_visible(v0)
        check_positive("k", k)
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr!r}")

        positive_hidden = self.hidden_probabilities(v0)
        hidden_sample = torch.bernoulli(positive_hidden)
        for _ in range(k):
            vk = self.visible_probabilities(hidden_sample)
            negative_hidden = self.hidden_probabilities(vk)
            hidden_sample = torch.bernoulli(negative_hidden)

        batch_size = v0.shape[0]
        weight_step = positive_hidden.t() @ v0 - negative_hidden.t() @ vk
        self.weight.add_(weight_step, alpha=lr / batch_size)
        self.visible_bias.add_((v0 - vk).mean(dim=0), alpha=lr)
        self.hidden_bias.add_((positive_hidden - negative_hidden).mean(dim=0), alpha=lr)

        return F.mse_loss(vk, v0).item()

    @torch.no_grad()
    def reconstruction_error(self, visible: torch.Tensor) -> float:
        """Return the mean squared error of the deterministic reconstruction p(v | p(h | v))."""
        self._check_visible(visible)
        reconstruction = self.visible_probabilities(self.hidden_probabilities(visible))
        return F.mse_loss(reconstruction, visible).item()

    def _check_visible(self, visible: torch.Tensor) -> None:
        if visible.ndim != 2 or visible.shape[1] != self.num_visible:
            raise ValueError(
                f"expected visible units of shape (batch, {self.num_visible}), "
                f"got {tuple(visible.shape)}"
            )


class DeepBeliefNetwork(nn.Module):
    """Stack of RBMs whose weights also form a sigmoid feed-forward classifier.

    The image is average-pooled to ``input_size`` x ``input_size`` and flattened into
    visible units. Inputs arrive normalised with a mean and standard deviation, so each
    sample is min-max scaled to [0, 1]. Min-max scaling undoes that normalisation when
    every channel shares one mean and standard deviation (always so for one channel), so
    the visible units see the image's own intensity profile whatever constants the data
    used. A sigmoid would instead depend on those constants. A constant image maps to
    all zeros.

    ``pretrain`` trains the RBMs greedily, one layer at a time, with the CD-k update given
    in the ``RBM`` docstring. Fine-tuning then trains every RBM weight and hidden bias with
    the linear head by backpropagation through ``forward``. The visible biases are used
    only in pre-training, so they receive no gradient.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        image_size: int = 128,
        input_size: int = 32,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_flat_model_arguments(num_classes, in_chans, image_size, input_size, hidden, dropout)

        self.in_chans = in_chans
        self.image_size = image_size
        self.pool = nn.AdaptiveAvgPool2d(input_size)

        layer_sizes = [in_chans * input_size * input_size, *hidden]
        self.rbms = nn.ModuleList(
            RBM(num_visible, num_hidden)
            for num_visible, num_hidden in zip(layer_sizes[:-1], layer_sizes[1:])
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(layer_sizes[-1], num_classes)

    def visible_units(self, images: torch.Tensor) -> torch.Tensor:
        """Pool, flatten and min-max scale images (B x in_chans x H x W) to [0, 1]."""
        check_image_batch(images, self.in_chans)
        flat = self.pool(images).flatten(1)
        minimum = flat.amin(dim=1, keepdim=True)
        value_range = flat.amax(dim=1, keepdim=True) - minimum
        return (flat - minimum) / value_range.clamp_min(1e-8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map images (B x in_chans x H x W) to logits (B x num_classes)."""
        activations = self.visible_units(images)
        for rbm in self.rbms:
            activations = self.dropout(rbm.hidden_probabilities(activations))
        return self.head(activations)

    @torch.no_grad()
    def pretrain(
        self,
        batches: Callable[[], Iterable[torch.Tensor]],
        epochs: int = 1,
        cd_steps: int = 1,
        lr: float = 0.05,
        log_every: int | None = None,
    ) -> list[dict[str, int | float]]:
        """Pre-train the RBMs greedily, layer by layer, with CD-``cd_steps``.

        ``batches`` is called once per layer and epoch and must return a fresh iterable of
        image tensors (B x in_chans x H x W). The images are moved to the device of the
        parameters and propagated to each RBM through the hidden probabilities of the
        layers below it. Logs one line per layer and epoch, and with ``log_every`` also
        the running error every that many batches. Returns one entry per layer and epoch,
        ``{"layer": i, "epoch": e, "reconstruction_error": mean CD error over samples}``.
        """
        check_positive("epochs", epochs)
        check_positive("cd_steps", cd_steps)
        if log_every is not None:
            check_positive("log_every", log_every)

        device = self.head.weight.device
        dtype = self.head.weight.dtype
        history: list[dict[str, int | float]] = []
        for layer, rbm in enumerate(self.rbms):
            logger.info(
                "Pre-training RBM layer %d (%d visible, %d hidden units) for %d epochs",
                layer, rbm.num_visible, rbm.num_hidden, epochs,
            )
            for epoch in range(epochs):
                error = self._pretrain_epoch(
                    layer, batches, cd_steps, lr, log_every, device, dtype
                )
                logger.info(
                    "RBM layer %d epoch %d: reconstruction error %.6f", layer, epoch, error
                )
                history.append({"layer": layer, "epoch": epoch, "reconstruction_error": error})
        return history

    def _pretrain_epoch(
        self,
        layer: int,
        batches: Callable[[], Iterable[torch.Tensor]],
        cd_steps: int,
        lr: float,
        log_every: int | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> float:
        """Run one epoch of CD on RBM ``layer`` and return its sample-weighted mean error."""
        rbm = self.rbms[layer]
        error_sum = 0.0
        sample_count = 0
        for batch_index, images in enumerate(batches(), start=1):
            visible = self.visible_units(images.to(device=device, dtype=dtype))
            for lower_rbm in self.rbms[:layer]:
                visible = lower_rbm.hidden_probabilities(visible)

            batch_error = rbm.contrastive_divergence(visible, cd_steps, lr)
            error_sum += batch_error * visible.shape[0]
            sample_count += visible.shape[0]

            if log_every is not None and batch_index % log_every == 0:
                logger.info(
                    "RBM layer %d batch %d: running reconstruction error %.6f",
                    layer, batch_index, error_sum / sample_count,
                )

        if sample_count == 0:
            raise ValueError(
                "batches() returned no batches. It must return a fresh, non-empty iterable "
                "of image tensors on every call"
            )
        return error_sum / sample_count
