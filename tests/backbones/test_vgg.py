"""VGG16 with torchvision's key names: strict round trip through a file, taps, missing-file error."""

import numpy as np
import pytest
import torch
from skimage import data

from backbones import VGG16, WeightsNotFoundError, load_backbone

# torchvision's vgg16-397923af.pth keys (13 convolutions, 3 linear layers).
TORCHVISION_KEYS = [
    f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for p in ("weight", "bias")
] + [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A randomly initialised VGG16 saved under torchvision's file name in a fake hub dir."""
    torch.manual_seed(0)
    model = VGG16()
    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    path = hub / "checkpoints" / "vgg16-397923af.pth"
    torch.save(model.state_dict(), path)
    return model, hub, path


def test_keys_are_torchvision_keys(saved):
    state = saved[0].state_dict()
    assert list(state) == TORCHVISION_KEYS
    assert state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["classifier.0.weight"].shape == (4096, 512 * 7 * 7)
    assert state["classifier.6.weight"].shape == (1000, 4096)


def test_strict_load_from_a_given_path(saved):
    model, _, path = saved
    net = load_backbone("vgg16", weights=path, device="cpu")
    assert not net.training
    for k, v in model.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


def test_load_from_the_hub_cache(saved, monkeypatch):
    model, hub, _ = saved
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    net = load_backbone("vgg16", device="cpu")
    assert torch.equal(net.state_dict()["classifier.6.bias"], model.state_dict()["classifier.6.bias"])


def test_missing_file_names_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        load_backbone("vgg16", device="cpu")
    msg = str(err.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "checkpoints") in msg
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        load_backbone("vgg16", weights=tmp_path / "nope.pth", device="cpu")


def test_wrong_layout_is_rejected(tmp_path):
    path = tmp_path / "vgg16-397923af.pth"
    # a VGG with BN (vgg16_bn layout) shifts every index: features.1 is then a BN layer
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.1.running_mean": torch.zeros(64)}, path)
    with pytest.raises(RuntimeError):
        load_backbone("vgg16", weights=path, device="cpu")


def test_taps_strides_and_gradient(saved):
    model, _, _ = saved
    x = model.preprocess(data.chelsea(), size=64).requires_grad_(True)
    feats = model.features(x, taps=tuple(model.tap_strides))
    for tap, f in feats.items():
        s = model.tap_strides[tap]
        assert f.shape == (1, model.tap_channels[tap], 64 // s, 64 // s)
    feats["s16"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert np.isfinite(model(x.detach()).detach().numpy()).all()


def test_real_weights_classify_chelsea_as_a_cat_when_present():
    import os

    from backbones import hub_checkpoint_dir

    if not os.path.isfile(os.path.join(hub_checkpoint_dir(), "vgg16-397923af.pth")):
        pytest.skip("torchvision's vgg16-397923af.pth is not in the torch hub cache")
    net = load_backbone("vgg16", device="cpu")
    assert {281, 282, 283, 284, 285} & set(net.classify(data.chelsea(), topk=5).indices.tolist())
