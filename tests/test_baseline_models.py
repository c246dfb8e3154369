"""Tests for the comparison models: plain CNN, MLP, RBM and deep belief network."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from brainkd.models.baselines import MLP, PlainCNN
from brainkd.models.dbn import RBM, DeepBeliefNetwork

IMAGE_SIZE = 32


def build_plain_cnn(**overrides) -> PlainCNN:
    kwargs = {"num_classes": 4, "image_size": IMAGE_SIZE, "channels": (8, 16), "dropout": 0.0}
    return PlainCNN(**{**kwargs, **overrides})


def build_mlp(**overrides) -> MLP:
    kwargs = {
        "num_classes": 4,
        "image_size": IMAGE_SIZE,
        "input_size": 8,
        "hidden": (32,),
        "dropout": 0.0,
    }
    return MLP(**{**kwargs, **overrides})


def build_dbn(**overrides) -> DeepBeliefNetwork:
    kwargs = {"num_classes": 4, "image_size": IMAGE_SIZE, "input_size": 8, "hidden": (32, 16)}
    return DeepBeliefNetwork(**{**kwargs, **overrides})


BUILDERS = {"plain_cnn": build_plain_cnn, "mlp": build_mlp, "dbn": build_dbn}


def make_square_images(
    count: int = 16, in_chans: int = 1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make dim noise images (label 0) and the same with a bright central square (label 1)."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.randn(count, in_chans, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    labels = torch.arange(count) % 2
    images[labels == 1, :, 8:24, 8:24] += 2.0
    return images, labels


def make_binary_patterns(count: int = 64, num_visible: int = 36, seed: int = 0) -> torch.Tensor:
    """Make copies of four random binary prototypes with 5% of their bits flipped."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, num_visible, generator=generator).round()
    patterns = prototypes[torch.arange(count) % 4]
    flips = torch.rand(count, num_visible, generator=generator) < 0.05
    return torch.where(flips, 1.0 - patterns, patterns)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", BUILDERS)
def test_output_shape(name, in_chans):
    torch.manual_seed(0)
    model = BUILDERS[name](in_chans=in_chans)
    images, _ = make_square_images(count=5, in_chans=in_chans)

    logits = model(images)

    assert logits.shape == (5, 4)


@pytest.mark.parametrize("name", BUILDERS)
def test_wrong_channel_count_rejected(name):
    model = BUILDERS[name](in_chans=1)
    images, _ = make_square_images(count=2, in_chans=3)

    with pytest.raises(ValueError, match="in_chans"):
        model(images)


@pytest.mark.parametrize("name", BUILDERS)
def test_training_lowers_loss(name):
    torch.manual_seed(0)
    model = BUILDERS[name](num_classes=2)
    images, labels = make_square_images()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize(
    ("name", "overrides", "argument"),
    [
        ("plain_cnn", {"num_classes": 0}, "num_classes"),
        ("plain_cnn", {"in_chans": -1}, "in_chans"),
        ("plain_cnn", {"channels": ()}, "channels"),
        ("plain_cnn", {"channels": (8, 0)}, "channels"),
        ("plain_cnn", {"image_size": 2}, "image_size"),
        ("plain_cnn", {"dropout": 1.0}, "dropout"),
        ("mlp", {"hidden": []}, "hidden"),
        ("mlp", {"input_size": 0}, "input_size"),
        ("mlp", {"input_size": 64}, "input_size"),
        ("mlp", {"dropout": -0.1}, "dropout"),
        ("dbn", {"hidden": ()}, "hidden"),
        ("dbn", {"hidden": (16, -4)}, "hidden"),
        ("dbn", {"image_size": 0}, "image_size"),
        ("dbn", {"num_classes": 2.5}, "num_classes"),
    ],
)
def test_invalid_argument_named(name, overrides, argument):
    with pytest.raises(ValueError, match=argument):
        BUILDERS[name](**overrides)


def test_rbm_invalid_arguments_named():
    rbm = RBM(num_visible=4, num_hidden=2)
    visible = torch.rand(3, 4)

    with pytest.raises(ValueError, match="num_hidden"):
        RBM(num_visible=4, num_hidden=0)
    with pytest.raises(ValueError, match="k must"):
        rbm.contrastive_divergence(visible, k=0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        rbm.contrastive_divergence(visible, k=1, lr=0.0)
    with pytest.raises(ValueError, match="visible units"):
        rbm.reconstruction_error(torch.rand(3, 5))


def test_rbm_cd_lowers_reconstruction_error():
    torch.manual_seed(0)
    patterns = make_binary_patterns()
    rbm = RBM(num_visible=36, num_hidden=16)
    error_before = rbm.reconstruction_error(patterns)

    for _ in range(100):
        rbm.contrastive_divergence(patterns, k=1, lr=0.5)
    error_after = rbm.reconstruction_error(patterns)

    assert error_after < 0.5 * error_before


def test_rbm_cd_returns_batch_error():
    torch.manual_seed(0)
    patterns = make_binary_patterns(count=8)
    rbm = RBM(num_visible=36, num_hidden=16)

    error = rbm.contrastive_divergence(patterns, k=2, lr=0.1)

    assert isinstance(error, float)
    assert 0.0 <= error <= 1.0


def test_dbn_visible_units_in_unit_range():
    images, _ = make_square_images(count=4)
    model = build_dbn()

    visible = model.visible_units(images)

    assert visible.shape == (4, 64)
    assert visible.min().item() == pytest.approx(0.0)
    assert visible.max().item() == pytest.approx(1.0)


def test_dbn_rbm_weights_fine_tuned():
    torch.manual_seed(0)
    model = build_dbn(num_classes=2)
    images, labels = make_square_images()
    weight_before = model.rbms[0].weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()

    assert not torch.equal(model.rbms[0].weight, weight_before)


def test_dbn_pretrain_history_and_errors(caplog):
    torch.manual_seed(0)
    model = build_dbn()
    images, _ = make_square_images()

    with caplog.at_level(logging.INFO, logger="brainkd.models.dbn"):
        history = model.pretrain(lambda: [images[:8], images[8:]], epochs=8, lr=0.5)

    assert [(entry["layer"], entry["epoch"]) for entry in history] == [
        (layer, epoch) for layer in range(2) for epoch in range(8)
    ]
    messages = [record.getMessage() for record in caplog.records]
    epoch_lines = [message for message in messages if ": reconstruction error" in message]
    assert len(epoch_lines) == 16
    for layer in range(2):
        errors = [entry["reconstruction_error"] for entry in history if entry["layer"] == layer]
        assert errors[-1] < 0.8 * errors[0], f"layer {layer} errors {errors}"


def test_dbn_pretrain_logs_running_error(caplog):
    torch.manual_seed(0)
    model = build_dbn(hidden=(16,))
    images, _ = make_square_images(count=8)
    batches = list(images.chunk(4))

    with caplog.at_level(logging.INFO, logger="brainkd.models.dbn"):
        model.pretrain(lambda: batches, epochs=1, log_every=2)

    messages = [record.getMessage() for record in caplog.records]
    batch_lines = [message for message in messages if "running reconstruction error" in message]
    assert len(batch_lines) == 2


def test_dbn_pretrain_casts_batches():
    torch.manual_seed(0)
    model = build_dbn().double()
    images, _ = make_square_images(count=4)

    history = model.pretrain(lambda: [images], epochs=1)

    assert len(history) == 2


def test_dbn_pretrain_empty_batches_rejected():
    model = build_dbn()

    with pytest.raises(ValueError, match="no batches"):
        model.pretrain(lambda: [], epochs=1)
