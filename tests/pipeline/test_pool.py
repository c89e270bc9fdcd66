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


# --- Exact values: conversions that agree on the easy inputs but not on these. ---------------


def test_sixteen_bit_is_scaled_by_255_over_65535_and_rounded(tmp_path):
    # Not multiples of 257 (where x >> 8 and round(x * 255 / 65535) agree): 500 -> 1.95 -> 2.
    values = np.array([[0, 128, 129, 500, 32767, 65535]], np.uint16)
    expected = [0, 0, 1, 2, 127, 255]
    out, notes = to_rgb_uint8(values)
    assert out[0, :, 0].tolist() == expected and notes[0] == "16-bit converted to 8-bit"
    Image.fromarray(values).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="g16.png: 16-bit converted to 8-bit"):
        gray = load_image(tmp_path / "g16.png")
    assert gray[0, :, 0].tolist() == expected and gray[0, :, 2].tolist() == expected


def test_sixteen_bit_rgb_png_is_scaled_per_channel(tmp_path):
    import cv2

    arr = np.zeros((2, 3, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 500, 129, 65535  # R, G, B
    cv2.imwrite(str(tmp_path / "c.png"), arr[..., ::-1])
    with pytest.warns(UserWarning, match="16-bit"):
        out = load_image(tmp_path / "c.png")
    assert out[1, 2].tolist() == [2, 1, 255]


def test_decode_cv2_returns_rgb_and_rgba_channel_order(tmp_path):
    import cv2

    from pipeline.pool import _decode_cv2

    rgba = np.zeros((2, 2, 4), np.uint16)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 1000, 2000, 3000, 4000
    cv2.imwrite(str(tmp_path / "a.png"), rgba[..., [2, 1, 0, 3]])
    got = _decode_cv2(tmp_path / "a.png")
    assert got.dtype == np.uint16 and got[0, 0].tolist() == [1000, 2000, 3000, 4000]
    assert got.flags.c_contiguous
    cv2.imwrite(str(tmp_path / "b.png"), rgba[..., [2, 1, 0]])
    assert _decode_cv2(tmp_path / "b.png")[1, 1].tolist() == [1000, 2000, 3000]
    (tmp_path / "x.png").write_bytes(b"not a png")
    assert _decode_cv2(tmp_path / "x.png") is None


@pytest.mark.parametrize("shape, expected", [((300, 120), (200, 80)), ((120, 300), (80, 200))])
def test_max_side_limits_the_longer_side_only(shape, expected):
    from pipeline.pool import limit_side

    # Only the longer side is over the limit: the shorter one (120) is below it.
    image = np.zeros(shape + (3,), np.uint8)
    out, scaled = limit_side(image, 200)
    assert scaled and out.shape == expected + (3,)
    same, scaled = limit_side(image, 300)  # longer side exactly at the limit: untouched
    assert not scaled and same is image
    same, scaled = limit_side(image, 0)  # 0: no limit
    assert not scaled and same is image
    thin, _ = limit_side(np.zeros((1000, 1, 3), np.uint8), 10)  # never a side of 0
    assert thin.shape == (10, 1, 3)


def test_downscaling_keeps_the_content_and_warns_with_both_sizes(tmp_path):
    arr = np.zeros((300, 120, 3), np.uint8)
    arr[:150] = 200  # top half bright
    write_image(tmp_path / "tall.png", arr)
    with pytest.warns(UserWarning, match=r"tall.png: downscaled from 120x300 to 80x200 \(max side 200\)"):
        out = load_image(tmp_path / "tall.png", max_side=200)
    assert out.shape == (200, 80, 3)
    assert out[:95].min() == 200 and out[105:].max() == 0
    with warnings_none():
        assert load_image(tmp_path / "tall.png", max_side=300).shape == (300, 120, 3)


class warnings_none:
    """Context manager: fail if any warning is raised inside."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False


def test_float_images_are_scaled_to_8_bit():
    from pipeline.pool import _float_to_uint8

    unit = np.array([[0.0, 0.5, 1.0, np.nan]])
    assert _float_to_uint8(unit).tolist() == [[0, 128, 255, 0]]  # [0, 1]: times 255, NaN -> 0
    wide = np.array([[2.0, 3.0, 4.0]])
    assert _float_to_uint8(wide).tolist() == [[0, 128, 255]]  # otherwise min..max -> 0..255
    neg = np.array([[-1.0, 0.0, 1.0]])
    assert _float_to_uint8(neg).tolist() == [[0, 128, 255]]
    assert _float_to_uint8(np.full((1, 2), 7.0)).tolist() == [[0, 0]]  # constant: 0
    out, notes = to_rgb_uint8(np.array([[0.0, 1.0]], np.float32))
    assert out[0, :, 1].tolist() == [0, 255] and notes == ["gray converted to RGB"]
    out, _ = to_rgb_uint8(np.array([[False, True]]))
    assert out[0, :, 0].tolist() == [0, 255]


def test_alpha_and_gray_layouts(tmp_path):
    la = np.zeros((1, 3, 2), np.uint8)
    la[0, :, 0] = [0, 100, 200]
    la[0, :, 1] = [255, 0, 51]  # opaque, transparent, 20% opaque
    out, notes = to_rgb_uint8(la)
    # 200 * 0.2 + 255 * 0.8 = 244
    assert out[0, :, 0].tolist() == [0, 255, 244] and (out[..., 0] == out[..., 2]).all()
    assert notes == ["alpha composited over white"]
    one, notes = to_rgb_uint8(np.array([[[7], [9]]], np.uint8))
    assert one[0].tolist() == [[7, 7, 7], [9, 9, 9]] and notes == ["gray converted to RGB"]
    rgb = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    same, notes = to_rgb_uint8(rgb)
    assert notes == [] and same.tolist() == rgb.tolist()
    with pytest.raises(BadInput, match=r"src: unsupported image shape \(1, 2, 5\)"):
        to_rgb_uint8(np.zeros((1, 2, 5), np.uint8), source="src")
    with pytest.raises(BadInput, match="unsupported image shape"):
        to_rgb_uint8(np.zeros((1, 2, 3, 1), np.uint8))


def test_pillow_modes_are_decoded_to_rgb(tmp_path):
    good = np.array([[[10, 20, 30], [200, 100, 50]]], np.uint8)
    # palette with a transparent entry: the transparent pixel becomes white
    pal = Image.fromarray(good).convert("P", palette=Image.ADAPTIVE, colors=2)
    index = np.asarray(pal)[0, 1]
    pal.save(tmp_path / "t.png", transparency=int(index))
    with pytest.warns(UserWarning, match="alpha composited"):
        out = load_image(tmp_path / "t.png")
    assert out[0, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [10, 20, 30]
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").tolist() == good.tolist()
    Image.fromarray(np.array([[False, True]])).save(tmp_path / "b.png")  # mode "1"
    assert load_image(tmp_path / "b.png")[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    Image.new("CMYK", (2, 1), (0, 0, 0, 0)).save(tmp_path / "c.tif")  # no ink: white
    assert load_image(tmp_path / "c.tif")[0].tolist() == [[255, 255, 255]] * 2
    Image.fromarray(np.array([[0.0, 2.0, 4.0]], np.float32)).save(tmp_path / "f.tif")  # mode "F"
    with pytest.warns(UserWarning, match="gray"):
        assert load_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[-5, 500, 70000]], np.int32)).save(tmp_path / "i.tif")  # mode "I"
    with pytest.warns(UserWarning, match="16-bit"):
        assert load_image(tmp_path / "i.tif")[0, :, 0].tolist() == [0, 2, 255]


def test_unreadable_files_name_the_problem(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(BadInput, match=r"zero.png: empty file \(0 bytes\)$"):
        load_image(tmp_path / "zero.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(BadInput, match=r"text.png: not an image file \(unrecognised format\)$"):
        load_image(tmp_path / "text.png")
    write_image(tmp_path / "ok.png", np.zeros((40, 40, 3), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match=r"cut.png: cannot be decoded \(.+\)$"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(BadInput, match=r"cut.png: cannot be decoded"):
        load_map(tmp_path / "cut.png")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(BadInput, match=r"bad.npy: cannot be read as a .npy array \(.+\)$"):
        load_map(tmp_path / "bad.npy")


def test_decompression_bombs_are_refused_in_one_line(tmp_path, monkeypatch):
    write_image(tmp_path / "big.png", np.zeros((40, 40, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > 2 x 100: an error
    with pytest.raises(BadInput, match=r"big.png: Image size \(1600 pixels\) exceeds"):
        load_image(tmp_path / "big.png")


def test_load_map_layouts_values_and_resizing(tmp_path):
    write_image(tmp_path / "rgba.png", np.array([[[0, 0, 255, 0], [255, 255, 255, 255]]], np.uint8))
    np.testing.assert_allclose(load_map(tmp_path / "rgba.png"), [[1 / 3, 1.0]], rtol=1e-6)  # alpha dropped
    la = Image.fromarray(np.array([[[51, 0], [255, 7]]], np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(load_map(tmp_path / "la.png"), [[0.2, 1.0]], rtol=1e-6)
    Image.fromarray(np.array([[500, 65535]], np.uint16)).save(tmp_path / "m16.png")
    np.testing.assert_allclose(load_map(tmp_path / "m16.png"), [[500 / 65535, 1.0]], rtol=1e-6)
    np.save(tmp_path / "n.npy", np.array([[-1.0, np.nan, 0.25]]))
    got = load_map(tmp_path / "n.npy")
    assert got.dtype == np.float32 and got.tolist() == [[0.0, 0.0, 0.25]]
    write_image(tmp_path / "half.png", np.full((2, 3), 255, np.uint8))
    with pytest.warns(UserWarning, match=r"half.png: map of size 3x2 resized to 6x4"):
        big = load_map(tmp_path / "half.png", shape=(4, 6))
    assert big.shape == (4, 6) and big.dtype == np.float32 and np.allclose(big, 1.0)
    with warnings_none():
        assert load_map(tmp_path / "half.png", shape=(2, 3)).shape == (2, 3)


def test_save_map_png_rounds_clips_and_replaces(tmp_path):
    from pipeline.pool import save_map_png

    target = tmp_path / "sub" / "m.png"
    save_map_png(target, np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan]]))
    back = np.asarray(Image.open(target))
    assert back.dtype == np.uint8 and back.tolist() == [[0, 128, 255, 255, 0, 0]]
    save_map_png(target, np.ones((1, 2)))
    assert np.asarray(Image.open(target)).tolist() == [[255, 255]]
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.png"]  # no temporary left


def test_discover_keys_by_stem_and_reports_duplicates(tmp_path):
    from pipeline.pool import discover

    for name in ("b.png", "a.JPG", "b.jpg", ".hidden.png", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.png").mkdir()
    found = discover(tmp_path)
    assert list(found.files) == ["a", "b"]
    assert found.files["b"].name == "b.jpg"  # sorted: b.jpg before b.png
    assert found.problems == (f"{tmp_path / 'b.png'}: another file with stem 'b' (b.jpg) is used instead",)
    assert list(discover(tmp_path, (".txt",)).files) == ["c"]
    with pytest.raises(BadInput, match=r"^gt folder .*nope does not exist$"):
        discover(tmp_path / "nope", what="gt")
    with pytest.raises(BadInput, match=r"^pool path .*c.txt is not a folder$"):
        discover(tmp_path / "c.txt")


def test_demo_pool_writes_the_packaged_images_and_keeps_existing_files(tmp_path, monkeypatch):
    import skimage.data

    import pipeline.pool
    from pipeline.pool import write_demo_pool

    DEMO_IMAGES = ("astronaut", "coins", "stereo_motorcycle")  # three of them: PNG encoding is slow
    monkeypatch.setattr(pipeline.pool, "DEMO_IMAGES", DEMO_IMAGES)
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "coins.png").write_bytes(b"mine")
    written = write_demo_pool(folder)
    assert [p.name for p in written] == [f"{n}.png" for n in DEMO_IMAGES]
    assert (folder / "coins.png").read_bytes() == b"mine"
    assert np.array_equal(np.asarray(Image.open(folder / "astronaut.png")), skimage.data.astronaut())
    left = skimage.data.stereo_motorcycle()[0]
    assert np.array_equal(np.asarray(Image.open(folder / "stereo_motorcycle.png")), left)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)
    assert write_demo_pool(tmp_path / "new" / "deeper")[0].exists()


def test_a_lab_image_is_converted_to_rgb(tmp_path):
    lab = Image.new("LAB", (2, 1))
    lab.putpixel((0, 0), (255, 128, 128))  # L = 100, a = b = 0: white
    lab.putpixel((1, 0), (0, 128, 128))  # L = 0: black
    lab.save(tmp_path / "lab.tif")
    out = load_image(tmp_path / "lab.tif").astype(int)
    assert np.abs(out[0, 0] - 255).max() <= 2 and np.abs(out[0, 1]).max() <= 2


def test_partial_alpha_is_composited_over_white_in_proportion():
    rgba = np.array([[[0, 0, 0, 255], [0, 0, 0, 0], [0, 0, 0, 51], [255, 0, 0, 51], [100, 100, 100, 100]]],
                    np.uint8)
    out, notes = to_rgb_uint8(rgba)
    # alpha 51 / 255 = 0.2: 20% of the colour, 80% of the white background;
    # grey 100 at alpha 100 / 255: 100 * 100 / 255 + 255 * 155 / 255 = 194.2
    assert out.tolist() == [[[0, 0, 0], [255, 255, 255], [204, 204, 204], [255, 204, 204], [194, 194, 194]]]
    assert notes == ["alpha composited over white"]


# --- Boundaries of the conversions, the limits and the notices. ------------------------------


def test_float_images_within_0_1_are_times_255_and_others_min_max():
    from pipeline.pool import _float_to_uint8

    # Inside [0, 1] (bounds included) the values are kept: times 255, not stretched to 0..255.
    assert _float_to_uint8(np.array([[0.5, 1.0]])).tolist() == [[128, 255]]
    assert _float_to_uint8(np.array([[0.0, 0.5]])).tolist() == [[0, 128]]
    # Just outside (a maximum of 2): min..max -> 0..255.
    out = _float_to_uint8(np.array([[0.0, 1.0, 2.0]]))
    assert out.tolist() == [[0, 128, 255]] and out.dtype == np.uint8
    # A constant image outside [0, 1] is 0, its NaN pixels too.
    assert _float_to_uint8(np.array([[7.0, np.nan]])).tolist() == [[0, 0]]


def test_every_16_bit_value_becomes_its_value_over_257_rounded():
    # 255 / 65535 = 1 / 257: the 8-bit value k stored as 16 bits (257 k) comes back as k, and
    # every other value goes to the nearest.
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    out, _ = to_rgb_uint8(values)
    np.testing.assert_array_equal(out[..., 0], np.round(values / 257.0).astype(np.uint8))


def test_an_unsupported_layout_is_named_after_its_source():
    with pytest.raises(BadInput) as err:
        to_rgb_uint8(np.zeros((1, 2, 5), np.uint8))
    assert str(err.value) == "image: unsupported image shape (1, 2, 5)"


def test_load_image_names_the_file_of_an_unsupported_layout(tmp_path, monkeypatch):
    import pipeline.pool

    monkeypatch.setattr(pipeline.pool, "_decode", lambda path: np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(BadInput) as err:
        load_image(tmp_path / "odd.tif")
    assert str(err.value) == f"{tmp_path / 'odd.tif'}: unsupported image shape (2, 2, 5)"


def test_notices_are_attributed_to_the_caller_not_to_the_loader(tmp_path):
    import pipeline.pool

    # stacklevel: a conversion notice is reported where the file was loaded from (a user's
    # warning filter or log then shows which code read it), never at the loader's own line.
    write_image(tmp_path / "g.png", np.zeros((2, 3), np.uint8))
    with pytest.warns(UserWarning, match="gray converted") as rec:
        load_image(tmp_path / "g.png")
    assert len(rec) == 1 and rec[0].filename != pipeline.pool.__file__
    with pytest.warns(UserWarning, match="resized") as rec:
        load_map(tmp_path / "g.png", shape=(4, 6))
    assert len(rec) == 1 and rec[0].filename != pipeline.pool.__file__


def test_the_default_max_side_is_2048(tmp_path):
    write_image(tmp_path / "wide.png", np.zeros((1, 2049, 3), np.uint8))
    with pytest.warns(UserWarning, match=r"wide.png: downscaled from 2049x1 to 2048x1 \(max side 2048\)"):
        assert load_image(tmp_path / "wide.png").shape == (1, 2048, 3)


def test_max_side_one_and_thin_wide_images():
    from pipeline.pool import limit_side

    out, scaled = limit_side(np.zeros((300, 120, 3), np.uint8), 1)
    assert scaled and out.shape == (1, 1, 3)
    wide, scaled = limit_side(np.zeros((1, 1000, 3), np.uint8), 10)  # never a side of 0, nor more than 1
    assert scaled and wide.shape == (1, 10, 3)


def test_downscaling_averages_every_pixel_so_thin_lines_are_kept():
    from pipeline.pool import limit_side

    # A bright line every fourth row, downscaled 4x: each output row is the mean of four input
    # rows (area interpolation), 255 / 4; a point-sampling or bilinear resize would drop the lines.
    image = np.zeros((8, 8, 3), np.uint8)
    image[::4] = 255
    out, scaled = limit_side(image, 2)
    assert scaled and out.shape == (2, 2, 3)
    assert (out == 64).all()


def test_a_duplicate_stem_does_not_hide_the_files_after_it(tmp_path):
    from pipeline.pool import discover

    for name in ("b.jpg", "b.png", "c.png", "d.bmp"):
        (tmp_path / name).write_bytes(b"x")
    found = discover(tmp_path)
    assert list(found.files) == ["b", "c", "d"] and len(found.problems) == 1


def test_a_png_map_and_the_npy_of_its_values_load_the_same_resized_or_not(tmp_path):
    rng = np.random.default_rng(3)
    m8 = rng.integers(0, 256, (5, 7)).astype(np.uint8)
    write_image(tmp_path / "m.png", m8)
    np.save(tmp_path / "m.npy", m8.astype(np.float32) / np.float32(255))
    np.save(tmp_path / "m64.npy", m8.astype(np.float64) / 255)
    plain = load_map(tmp_path / "m.png")
    np.testing.assert_array_equal(load_map(tmp_path / "m.npy"), plain)
    np.testing.assert_array_equal(load_map(tmp_path / "m64.npy"), plain)
    with pytest.warns(UserWarning, match="resized"):
        big = load_map(tmp_path / "m.png", shape=(9, 13))
    for name in ("m.npy", "m64.npy"):
        with pytest.warns(UserWarning, match="resized"):
            np.testing.assert_array_equal(load_map(tmp_path / name, shape=(9, 13)), big, err_msg=name)


def test_a_resized_map_keeps_its_dark_and_bright_ends(tmp_path):
    write_image(tmp_path / "ramp.png", np.array([[0, 255]], np.uint8))
    with pytest.warns(UserWarning, match="resized"):
        got = load_map(tmp_path / "ramp.png", shape=(2, 4))
    assert got[:, 0].tolist() == [0.0, 0.0] and got[:, -1].tolist() == [1.0, 1.0]
    assert (np.diff(got, axis=1) >= 0).all() and 0 < got[0, 1] < got[0, 2] < 1


def test_every_stored_map_loads_within_0_1(tmp_path):
    import cv2

    # 16-bit RGB PNGs are decoded by OpenCV at full depth; whatever the layout, a map is in [0, 1].
    cv2.imwrite(str(tmp_path / "c16.png"), np.full((2, 2, 3), 500, np.uint16))
    Image.fromarray(np.array([[500, 65535]], np.uint16)).save(tmp_path / "g16.png")
    write_image(tmp_path / "rgb.png", np.full((2, 2, 3), 255, np.uint8))
    for name in ("c16.png", "g16.png", "rgb.png"):
        got = load_map(tmp_path / name)
        assert got.dtype == np.float32 and got.min() >= 0.0 and got.max() <= 1.0, name


def test_a_float64_map_is_written_as_its_float32_values(tmp_path):
    from pipeline.pool import save_map_png

    # Maps are float32 in the package: a float64 map just below a rounding boundary (0.5 - 1e-11,
    # which is 0.5 in float32) writes the same pixels as its float32 copy.
    m = np.array([[0.5 - 1e-11, 0.5, 0.25]])
    save_map_png(tmp_path / "a.png", m)
    save_map_png(tmp_path / "b.png", m.astype(np.float32))
    a, b = np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png"))
    assert a.tolist() == b.tolist() == [[128, 128, 64]]


def test_a_palette_image_without_transparency_loads_without_a_notice(tmp_path):
    good = np.array([[[10, 20, 30], [200, 100, 50]]], np.uint8)
    Image.fromarray(good).convert("P", palette=Image.ADAPTIVE, colors=2).save(tmp_path / "p.png")
    with warnings_none():  # nothing to composite: no "alpha composited" notice
        assert load_image(tmp_path / "p.png").tolist() == good.tolist()


def test_cmyk_and_ycbcr_images_are_converted_to_their_rgb_colours(tmp_path):
    Image.new("CMYK", (1, 1), (255, 0, 0, 0)).save(tmp_path / "cyan.tif")  # full cyan ink
    assert load_image(tmp_path / "cyan.tif")[0, 0].tolist() == [0, 255, 255]
    # Pillow's IM format keeps YCbCr as stored (TIFF and JPEG open as RGB); Y 76, Cb 85, Cr 255 is red.
    Image.new("YCbCr", (1, 1), (76, 85, 255)).save(tmp_path / "red.im", format="IM")
    assert Image.open(tmp_path / "red.im").mode == "YCbCr"
    from pipeline.pool import _decode

    r, g, b = _decode(tmp_path / "red.im")[0, 0].tolist()
    assert r >= 250 and g <= 5 and b <= 5


def test_a_float_image_is_scaled_from_its_exact_values(tmp_path):
    # 0.6098039 (float32) times 255 is 155.4999983 exactly: 155, where float32 arithmetic would
    # round the product to 155.5 and then to 156.
    Image.fromarray(np.array([[0.0, 1.0, 0.6098039]], np.float32)).save(tmp_path / "f.tif")  # mode "F"
    with pytest.warns(UserWarning, match="gray"):
        assert load_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 255, 155]


def test_a_32_bit_integer_map_loads_its_zeros_and_negatives_as_zero(tmp_path):
    Image.fromarray(np.array([[0, -5, 65535]], np.int32)).save(tmp_path / "i.tif")  # mode "I"
    assert load_map(tmp_path / "i.tif").tolist() == [[0.0, 0.0, 1.0]]


def test_a_big_endian_16_bit_image_loads_as_rgb_uint8(tmp_path):
    im = Image.frombytes("I;16B", (3, 1), np.array([[500, 65535, 1000]], ">u2").tobytes())
    im.save(tmp_path / "be.tif")
    assert Image.open(tmp_path / "be.tif").mode == "I;16B"
    with pytest.warns(UserWarning):
        out = load_image(tmp_path / "be.tif")
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8 and out[0, 1].tolist() == [255, 255, 255]
    got = load_map(tmp_path / "be.tif")
    assert got.dtype == np.float32 and got.shape == (1, 3) and got[0, 1] == 1.0


# --- 16-bit layouts, byte orders and NaN pixels. ---------------------------------------------


def _write_png16(path, arr, color_type):
    """A 16-bit PNG written byte by byte (color_type 4: gray + alpha, 6: RGBA), which Pillow cannot write."""
    import struct
    import zlib

    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_a_16_bit_rgb_png_map_keeps_its_values(tmp_path):
    import cv2

    # The channels are averaged: the mean of 500, 1000 and 1500 is 1000 of 65535, not saturated to 1.
    arr = np.zeros((2, 2, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 500, 1000, 1500  # R, G, B
    cv2.imwrite(str(tmp_path / "c16.png"), arr[..., ::-1])
    np.testing.assert_allclose(load_map(tmp_path / "c16.png"), np.full((2, 2), 1000 / 65535), rtol=1e-6)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((2, 2, 3), 500, np.uint16))
    np.testing.assert_allclose(load_map(tmp_path / "g.png"), np.full((2, 2), 500 / 65535), rtol=1e-6)
    rgba = np.dstack([arr, np.zeros((2, 2), np.uint16)])  # alpha dropped, as for 8-bit maps
    cv2.imwrite(str(tmp_path / "a16.png"), rgba[..., [2, 1, 0, 3]])
    np.testing.assert_allclose(load_map(tmp_path / "a16.png"), np.full((2, 2), 1000 / 65535), rtol=1e-6)


def test_a_big_endian_16_bit_image_is_scaled_like_any_16_bit_image(tmp_path):
    # Mode "I;16B" decodes to dtype >u2: scaled by 255 / 65535 with the 16-bit notice, not min-max stretched.
    im = Image.frombytes("I;16B", (3, 1), np.array([[500, 65535, 1000]], ">u2").tobytes())
    im.save(tmp_path / "be.tif")
    with pytest.warns(UserWarning, match="be.tif: 16-bit converted to 8-bit"):
        out = load_image(tmp_path / "be.tif")
    assert out[0, :, 0].tolist() == [2, 255, 4] and out[0, :, 2].tolist() == [2, 255, 4]
    np.testing.assert_allclose(load_map(tmp_path / "be.tif"), [[500 / 65535, 1.0, 1000 / 65535]], rtol=1e-6)


def test_16_bit_rgba_la_png_and_rgb_tiff_keep_16_bit_precision(tmp_path):
    import cv2

    # 500 -> 2, 129 -> 1, 1000 -> 4 (round(x * 255 / 65535)), where 8-bit truncation gives 1, 0, 3.
    rgba = np.zeros((1, 3, 4), np.uint16)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 500, 129, 1000
    rgba[0, :, 3] = [65535, 0, 13107]  # opaque, transparent, 20% opaque (51 in 8 bits)
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba[..., [2, 1, 0, 3]])
    with pytest.warns(UserWarning, match="rgba16.png: 16-bit converted to 8-bit"):
        out = load_image(tmp_path / "rgba16.png")
    # alpha as for 8-bit images: 2 * 0.2 + 255 * 0.8 = 204.4, 1 -> 204.2, 4 -> 204.8
    assert out[0].tolist() == [[2, 1, 4], [255, 255, 255], [204, 204, 205]]
    la = np.zeros((1, 3, 2), np.uint16)
    la[0, :, 0] = [500, 1000, 129]
    la[0, :, 1] = [65535, 65535, 0]
    _write_png16(tmp_path / "la16.png", la, color_type=4)
    with pytest.warns(UserWarning, match="la16.png: 16-bit converted to 8-bit"):
        out = load_image(tmp_path / "la16.png")
    assert out[0].tolist() == [[2, 2, 2], [4, 4, 4], [255, 255, 255]]
    np.testing.assert_allclose(load_map(tmp_path / "la16.png"), [[500 / 65535, 1000 / 65535, 129 / 65535]],
                               rtol=1e-6)
    cv2.imwrite(str(tmp_path / "rgb16.tif"), rgba[..., [2, 1, 0]])
    with pytest.warns(UserWarning, match="rgb16.tif: 16-bit converted to 8-bit"):
        out = load_image(tmp_path / "rgb16.tif")
    assert out[0, 0].tolist() == [2, 1, 4]
    np.testing.assert_allclose(load_map(tmp_path / "rgb16.tif"), np.full((1, 3), (500 + 129 + 1000) / 3 / 65535),
                               rtol=1e-6)


def test_nan_pixels_of_a_float_image_outside_0_1_are_the_darkest_value():
    from pipeline.pool import _float_to_uint8

    # NaN becomes 0 after the scaling, whatever the minimum: never wrapped, never mid-grey.
    assert _float_to_uint8(np.array([[2.0, 3.0, np.nan]])).tolist() == [[0, 255, 0]]
    assert _float_to_uint8(np.array([[-1.0, 0.0, 1.0, np.nan]])).tolist() == [[0, 128, 255, 0]]
    assert _float_to_uint8(np.array([[0.5, 1.0, np.nan]])).tolist() == [[128, 255, 0]]  # inside [0, 1]
    out, _ = to_rgb_uint8(np.array([[np.nan, 4.0, 6.0]], np.float32))
    assert out[0, :, 0].tolist() == [0, 0, 255]
