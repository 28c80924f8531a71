"""Every registered model family builds, runs forward on any input shape, and the paper's WRN has its size."""

import pytest
import torch

from lossaudit.core.errors import UserError
from lossaudit.training.models import MODELS, check_model_name, create_model, n_parameters


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 8), (3, 32)])
def test_every_family_builds_and_runs(family, shape):
    name = {"wrn": "wrn-10-1"}.get(family, MODELS[family].example)  # the example WRN is too big for a quick forward
    channels, size = shape
    model = create_model(name, in_channels=channels, n_classes=7, image_size=size)
    out = model(torch.randn(5, channels, size, size))
    assert out.shape == (5, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_wrn_28_10_has_the_papers_36_5_million_parameters():
    model = create_model("wrn-28-10", in_channels=3, n_classes=10, image_size=32)
    assert n_parameters(model) == 36_479_194  # the count Zagoruyko & Komodakis report as 36.5 M


def test_resnet20_matches_he_et_al_size():
    # He et al. report 0.27 M parameters for ResNet-20 (with 1x1 projection shortcuts here: 0.27 M as well)
    assert abs(n_parameters(create_model("resnet20", in_channels=3, n_classes=10, image_size=32)) - 0.27e6) < 0.01e6


@pytest.mark.parametrize("name", ["resnet9", "resnet2", "wrn-27-10", "wrn-28-0", "vgg16", "mlp2"])
def test_bad_model_names_are_rejected_with_the_valid_choices(name):
    with pytest.raises(UserError) as err:
        check_model_name(name)
    assert "\n" not in str(err.value) and name in str(err.value)
