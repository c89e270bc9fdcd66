"""Bad and unusual inputs: each gives one clear line naming the file, and the rest of the pool goes on."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from pipeline.config import build_params
from pipeline.pool import BadInput, load_image, load_map, to_rgb_uint8
from pipeline.runner import RunOptions, run

from .conftest import write_image


def _run(names, pool, out, **kw):
    params, _ = build_params(None, kw.pop("sets", []))
    lines = []
    report = run(names, params, RunOptions(out=out, pool=pool, progress=False, echo=lines.append, **kw))
    return {s.name: s for s in report.stages}, lines, report


@pytest.fixture
def messy_pool(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    rng = np.random.default_rng(1)
    good = rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    write_image(pool / "good.jpg", good, quality=95)
    write_image(pool / "gray.png", good[..., 0])
    write_image(pool / "rgba.png", np.dstack([good, np.full(good.shape[:2], 128, np.uint8)]))
    write_image(pool / "palette.png", good, format="PNG")
    Image.fromarray(good).convert("P", palette=Image.ADAPTIVE).save(pool / "palette.png")
    Image.fromarray((good[..., 0].astype(np.uint16) * 257)).save(pool / "deep16.png")
    write_image(pool / "one.png", good[:1, :1])
    write_image(pool / "big.png", np.zeros((300, 120, 3), np.uint8))
    write_image(pool / "tiff.tif", good)
    write_image(pool / "bitmap.bmp", good)
    (pool / "zero.jpg").write_bytes(b"")
    (pool / "text.png").write_text("this is not an image\n")
    full = (pool / "good.jpg").read_bytes()
    (pool / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (pool / "notes.txt").write_text("ignored: not an image extension")
    return pool


def test_messy_pool_reports_each_bad_file_in_one_line_and_loads_the_rest(messy_pool, tmp_path):
    stages, lines, report = _run(["pool"], messy_pool, tmp_path / "out", sets=["pool.max_side=100"])
    pool = stages["pool"]
    assert pool.failed == 3 and pool.computed == 9
    failures = [line for line in lines if "pool failed on" in line]
    assert len(failures) == 3
    text = "\n".join(failures)
    assert "zero: " in text and "empty file (0 bytes)" in text
    assert "text: " in text and "not an image file" in text
    assert "truncated: " in text and "cannot be decoded" in text
    notices = "\n".join(lines)
    assert "gray.png: gray converted to RGB" in notices
    assert "rgba.png: alpha composited over white" in notices
    assert "deep16.png: 16-bit converted to 8-bit" in notices
    assert "big.png: downscaled from 120x300 to 40x100 (max side 100)" in notices
    assert report.succeeded


def test_conversions_give_rgb_uint8(tmp_path):
    arr = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    write_image(tmp_path / "g.png", arr)
    with pytest.warns(UserWarning, match="gray"):
        out = load_image(tmp_path / "g.png")
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 1], arr)
    Image.fromarray(arr.astype(np.uint16) * 257).save(tmp_path / "d.png")
    with pytest.warns(UserWarning, match="16-bit"):
        deep = load_image(tmp_path / "d.png")
    np.testing.assert_array_equal(deep[..., 0], arr)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent -> white
    white, notes = to_rgb_uint8(rgba)
    assert notes == ["alpha composited over white"]
    assert np.all(white == 255)


def test_sixteen_bit_rgb_png_keeps_its_values(tmp_path):
    import cv2

    arr = np.zeros((5, 6, 3), np.uint16)
    arr[..., 0] = 65535  # red in RGB order
    cv2.imwrite(str(tmp_path / "c.png"), arr[..., ::-1])
    with pytest.warns(UserWarning, match="16-bit"):
        out = load_image(tmp_path / "c.png")
    assert out[0, 0].tolist() == [255, 0, 0]


def test_priors_and_gt_of_another_size_are_resized_and_orphans_reported(tiny_pool, tmp_path):
    priors = tmp_path / "priors"
    priors.mkdir()
    write_image(priors / "img0.png", np.full((10, 15), 200, np.uint8))  # image is 20x30
    write_image(priors / "img1.png", np.full((24, 24), 100, np.uint8))
    write_image(priors / "stranger.png", np.zeros((5, 5), np.uint8))
    stages, lines, _ = _run(["priors"], tiny_pool, tmp_path / "out", priors=priors)
    text = "\n".join(lines)
    assert "stranger.png: no image with stem 'stranger' in the pool (ignored)" in text
    assert "img0.png: map of size 15x10 resized to 30x20" in text
    assert "priors: no prior file for 'img2' (skipped)" in text
    assert stages["priors"].computed == 2 and stages["priors"].skipped == 2
    out = np.asarray(Image.open(tmp_path / "out" / "priors" / "img0.png"))
    assert out.shape == (20, 30) and abs(int(out.mean()) - 200) <= 1


def test_load_map_normalises_kinds(tmp_path):
    write_image(tmp_path / "m8.png", np.array([[0, 255]], np.uint8))
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "m16.png")
    Image.fromarray(np.array([[False, True]])).save(tmp_path / "m1.png")
    write_image(tmp_path / "rgb.png", np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    np.save(tmp_path / "m.npy", np.array([[0.0, 2.0]]))
    for name in ("m8.png", "m16.png", "m1.png", "rgb.png", "m.npy"):
        np.testing.assert_allclose(load_map(tmp_path / name), [[0.0, 1.0]], err_msg=name)
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 2)))
    with pytest.raises(BadInput, match="bad.npy: expected a 2-D map"):
        load_map(tmp_path / "bad.npy")


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels=st.sampled_from([0, 1, 2, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_]),
)
def test_any_decoded_array_becomes_rgb_uint8(h, w, channels, dtype):
    rng = np.random.default_rng(h * 31 + w)
    shape = (h, w) if channels == 0 else (h, w, channels)
    if dtype == np.bool_:
        arr = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype == np.float32:
        arr = rng.random(shape).astype(np.float32)
    else:
        arr = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    out, _ = to_rgb_uint8(arr)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


@settings(max_examples=20, deadline=None)
@given(data=st.binary(min_size=0, max_size=64))
def test_random_bytes_never_crash_the_loader_with_an_unclear_error(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / "x.png"
    path.write_bytes(data)
    with pytest.raises(BadInput, match="x.png"):
        load_image(path)
