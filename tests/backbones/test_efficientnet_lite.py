"""EfficientNet-Lite0: strict loading of the packaged weights, ImageNet acceptance, taps, gradients."""

import math

import numpy as np
import pytest
import torch
from skimage import data
from torch.nn import functional as F

from backbones import load_backbone
from backbones.efficientnet_lite import Conv2dSame, EfficientNetLite0, efficientnet_lite0_weights_path

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUP_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def net():
    return load_backbone("efficientnet_lite0", device="cpu")


def test_packaged_weights_have_our_layout_and_load_strictly():
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert list(model.state_dict()) == list(state)  # same keys, same order
    assert len(state) == 296
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(k.startswith("_blocks.") and k.endswith("_project_conv.weight") for k in state) == 16


def test_chelsea_is_a_cat(net):
    top = net.classify(data.chelsea(), topk=5)
    assert top.indices.shape == (5,)
    assert CAT_CLASSES & set(top.indices.tolist())


def test_coffee_is_an_espresso_or_cup(net):
    top = net.classify(data.coffee(), topk=5)
    assert CUP_CLASSES & set(top.indices.tolist())
    assert np.all(np.diff(top.probabilities) <= 0)  # most probable first


def test_model_is_in_eval_mode_and_deterministic(net):
    assert not net.training
    x = net.preprocess(data.chelsea())
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("shape", [(224, 224), (161, 250)])
def test_feature_taps_have_their_strides(net, shape):
    x = torch.zeros(2, 3, *shape)
    with torch.no_grad():
        feats = net.features(x, taps=tuple(net.tap_strides))
    assert set(feats) == set(net.tap_strides)
    for tap, f in feats.items():
        s = net.tap_strides[tap]
        # TF SAME padding: every strided layer gives ceil(n / 2), so a tap at stride s
        # has ceil(n / s) rows and columns.
        assert f.shape == (2, net.tap_channels[tap], math.ceil(shape[0] / s), math.ceil(shape[1] / s))


def test_features_match_the_classifier_path(net):
    x = net.preprocess(data.coffee())
    with torch.no_grad():
        head = net.features(x, taps=("head",))["head"]
        logits = net._fc(head.mean(dim=(2, 3)))
        assert torch.allclose(logits, net(x), atol=1e-4)


def test_gradient_reaches_the_input(net):
    x = net.preprocess(data.chelsea()).requires_grad_(True)
    logits = net(x)
    assert logits.shape == (1, 1000)
    logits[0, logits[0].argmax()].backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # parameters are frozen by default: only the input gets a gradient
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())


def test_trainable_backbone_gets_weight_gradients():
    net = load_backbone(device="cpu", trainable=True)
    net(torch.zeros(1, 3, 32, 32)).sum().backward()
    assert net._fc.weight.grad is not None and net._conv_stem.weight.grad is not None


def test_same_padding_puts_the_extra_pixel_bottom_right():
    torch.manual_seed(0)
    conv = Conv2dSame(3, 4, 3, stride=2)
    x = torch.randn(1, 3, 8, 9)
    # n=8, k=3, s=2: total pad (4-1)*2+3-8 = 1 -> (0 top, 1 bottom); n=9: 0 + ... = 2 -> (1, 1)
    ref = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, stride=2)
    assert torch.allclose(conv(x), ref)
    assert conv(x).shape[-2:] == (4, 5)


def test_same_padding_stride_one_is_symmetric():
    torch.manual_seed(0)
    conv = Conv2dSame(2, 2, 5, stride=1, groups=2)
    x = torch.randn(1, 2, 7, 6)
    ref = F.conv2d(F.pad(x, (2, 2, 2, 2)), conv.weight, groups=2)
    assert torch.allclose(conv(x), ref, atol=1e-6)
    assert conv(x).shape == x.shape
