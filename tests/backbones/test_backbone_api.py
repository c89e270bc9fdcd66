"""The shared Backbone API: device selection, preprocessing, classify, batched extraction."""

import numpy as np
import pytest
import torch
from skimage import data

from backbones import available_backbones, extract_features, load_backbone, select_device


@pytest.fixture(scope="module")
def net():
    return load_backbone(device="cpu")


def test_select_device():
    assert select_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == torch.device("cpu")


def test_registry_and_unknown_name():
    assert set(available_backbones()) == {"efficientnet_lite0", "vgg16", "mobilenet_v2"}
    with pytest.raises(ValueError, match="resnet"):
        load_backbone("resnet50")


def test_default_is_efficientnet_lite0(net):
    assert net.name == "efficientnet_lite0" and net.device == torch.device("cpu")


def test_preprocess_normalises_and_resizes(net):
    image = np.full((30, 40, 3), 127, np.uint8)
    x = net.preprocess(image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    # TF-lite normalisation: (127 - 127) / 128 = 0 everywhere (a constant survives resizing)
    assert torch.allclose(x, torch.zeros_like(x), atol=1e-6)
    assert net.preprocess(image, size=None).shape == (1, 3, 30, 40)
    assert net.preprocess(image, size=(20, 10)).shape == (1, 3, 20, 10)
    white = net.preprocess(np.full((8, 8, 3), 255, np.uint8), size=None)
    assert torch.allclose(white, torch.full_like(white, 128 / 128))


def test_preprocess_batches_and_lists(net):
    a, b = data.chelsea(), data.coffee()
    x = net.preprocess([a, b], size=64)
    assert x.shape == (2, 3, 64, 64)
    assert torch.allclose(x[1:], net.preprocess(b, size=64))
    stacked = np.stack([a, a])
    assert net.preprocess(stacked, size=None).shape == (2, 3) + a.shape[:2]
    with pytest.raises(ValueError, match="share"):
        net.preprocess([a, b], size=None)


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32), [], "x"]
)
def test_preprocess_rejects_bad_input(net, bad):
    with pytest.raises(ValueError):
        net.preprocess(bad)


def test_deprocess_inverts_preprocess(net):
    image = data.astronaut()[::4, ::4]
    back = net.deprocess(net.preprocess(image, size=None))
    assert back.shape == (1,) + image.shape and back.dtype == np.uint8
    assert np.abs(back[0].astype(int) - image).max() <= 1


def test_classify_shapes(net):
    one = net.classify(data.chelsea(), topk=3)
    many = net.classify([data.chelsea(), data.coffee()], topk=3)
    assert one.indices.shape == (3,) and many.indices.shape == (2, 3)
    np.testing.assert_array_equal(one.indices, many.indices[0])
    assert np.all((many.probabilities > 0) & (many.probabilities <= 1))
    with pytest.raises(ValueError):
        net.classify(data.chelsea(), topk=0)


def test_unknown_tap_is_rejected(net):
    with pytest.raises(ValueError, match="s64"):
        net.features(torch.zeros(1, 3, 32, 32), taps=("s64",))


def test_extract_features_batching_does_not_change_results(net):
    images = [data.chelsea(), data.coffee(), data.astronaut()]
    one = extract_features(net, images, taps=("s8", "head"), batch_size=1, size=96)
    three = extract_features(net, images, taps=("s8", "head"), batch_size=2, size=96)
    assert one["s8"].shape == (3, 40, 12, 12) and one["head"].shape == (3, 1280, 3, 3)
    assert one["s8"].dtype == np.float32 and isinstance(one["s8"], np.ndarray)
    for tap in one:
        np.testing.assert_allclose(one[tap], three[tap], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        direct = net.features(net.preprocess(images[2], size=96), taps=("s8",))["s8"].numpy()
    np.testing.assert_allclose(one["s8"][2:], direct, rtol=1e-4, atol=1e-4)


def test_load_once_builds_once_and_a_factory_may_load_another_model():
    from backbones.loaded import forget_loaded, load_once

    calls = []

    def inner():
        calls.append("inner")
        return {"weights": 1}

    def outer():
        calls.append("outer")
        return ("net", load_once(("test-inner",), inner))

    first = load_once(("test-outer",), outer)
    again = load_once(("test-outer",), outer)
    assert first is again and first[1] is load_once(("test-inner",), inner)
    assert calls == ["outer", "inner"]
    forget_loaded()
