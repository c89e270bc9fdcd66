"""MobileNetV2 with torchvision's key names: strict round trip through a file, taps, errors."""

import math

import pytest
import torch
from skimage import data

from backbones import MobileNetV2, WeightsNotFoundError, load_backbone


def test_keys_are_torchvision_keys():
    state = MobileNetV2().state_dict()
    # 6 (stem) + 12 (t=1 block) + 16 * 18 (t=6 blocks) + 6 (last conv) + 2 (classifier)
    assert len(state) == 314
    expected_shapes = {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.running_var": (16,),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.2.weight": (24, 96, 1, 1),
        "features.17.conv.3.bias": (320,),
        "features.18.0.weight": (1280, 320, 1, 1),
        "features.18.1.num_batches_tracked": (),
        "classifier.1.weight": (1000, 1280),
    }
    for k, shape in expected_shapes.items():
        assert tuple(state[k].shape) == shape, k


@pytest.mark.parametrize("file_name", ["mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"])
def test_strict_load_from_path_and_hub_cache(tmp_path, monkeypatch, file_name):
    torch.manual_seed(1)
    model = MobileNetV2()
    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "checkpoints" / file_name
    torch.save(model.state_dict(), path)
    from_path = load_backbone("mobilenet_v2", weights=path, device="cpu")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    from_hub = load_backbone("mobilenet_v2", device="cpu")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(from_path(x), ref) and torch.equal(from_hub(x), ref)


def test_missing_file_names_both_files_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_backbone("mobilenet_v2", device="cpu")
    assert isinstance(err.value, WeightsNotFoundError)
    msg = str(err.value)
    assert "mobilenet_v2-b0353104.pth" in msg and "mobilenet_v2-7ebf99e0.pth" in msg
    assert str(tmp_path / "checkpoints") in msg


@pytest.mark.parametrize("shape", [(224, 224), (100, 75)])
def test_taps_have_their_strides(shape):
    net = MobileNetV2()
    with torch.no_grad():
        feats = net.features(torch.zeros(1, 3, *shape), taps=tuple(net.tap_strides))
    for tap, f in feats.items():
        s = net.tap_strides[tap]
        # symmetric padding k // 2 with stride 2 gives ceil(n / 2) per strided layer
        assert f.shape == (1, net.tap_channels[tap], math.ceil(shape[0] / s), math.ceil(shape[1] / s))


def test_gradient_reaches_the_input():
    net = MobileNetV2()
    x = net.preprocess(data.coffee()).requires_grad_(True)
    net(x)[0, 967].backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_real_weights_classify_chelsea_as_a_cat_when_present():
    import os

    from backbones import hub_checkpoint_dir
    from backbones.mobilenet_v2 import MOBILENET_V2_FILES

    if not any(os.path.isfile(os.path.join(hub_checkpoint_dir(), f)) for f in MOBILENET_V2_FILES):
        pytest.skip("no torchvision MobileNetV2 weight file in the torch hub cache")
    net = load_backbone("mobilenet_v2", device="cpu")
    assert {281, 282, 283, 284, 285} & set(net.classify(data.chelsea(), topk=5).indices.tolist())
