"""ARN (detect/arn.py): self-attention, RCL, LRN (Eq. 1-8), the whole decoder and its training."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from detect.arn import ArnNetwork, arn_saliency, local_response_norm, train_arn  # noqa: E402

CHANNELS = {"s2": 16, "s4": 24, "s8": 40, "s16": 112, "s32": 320}
STRIDES = {"s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: small tensors on a shared machine run faster without OpenMP spinning."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _parts():
    """The SelfAttention and RCL classes (the ARN module's own submodules)."""
    net = ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, widths=(4, 4, 8, 8))
    return type(net.module.att5), type(net.module.side[0])


def _taps(rng, n, size=64, blob=None):
    """Random taps at ``size``; with ``blob`` (n, size, size) masks, the masks are written into
    every tap's first channel (so the decoder can learn them)."""
    out = []
    for i in range(n):
        f = {}
        for t, c in CHANNELS.items():
            side = size // STRIDES[t]
            a = rng.standard_normal((c, side, side)).astype(np.float32) * 0.1
            if blob is not None:
                import cv2

                a[0] = cv2.resize(blob[i].astype(np.float32), (side, side), interpolation=cv2.INTER_AREA) * 3
            f[t] = a.astype(np.float16)
        out.append(f)
    return out


def _brute_lrn(f, alpha=1e-3, beta=0.75):
    k = f.shape[1]
    n = k // 8 + 1
    out = np.empty_like(f)
    for c in range(k):
        lo, hi = max(0, c - n // 2), min(k - 1, c + n // 2)
        out[:, c] = f[:, c] / (1 + alpha / n * (f[:, lo:hi + 1] ** 2).sum(1)) ** beta
    return out


@pytest.mark.parametrize("k", [1, 7, 16, 33])
def test_lrn_is_eq8_with_the_window_clipped_to_the_channels(k):
    f = np.random.default_rng(k).random((2, k, 3, 4)).astype(np.float32) * 20
    got = local_response_norm(torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(got, _brute_lrn(f), rtol=1e-5)
    assert (got < f).all()  # a positive activation is always damped


def test_self_attention_with_gamma_zero_is_the_identity():
    attention, _ = _parts()
    for side, keys in ((6, 784), (16, 36)):  # exact attention, and the pooled one
        att = attention(16, keys)
        x = torch.randn(2, 16, side, side)
        assert torch.equal(att(x), x)


def test_self_attention_is_eq2_and_eq3_below_the_key_limit():
    attention, _ = _parts()
    att = attention(16, 784)
    with torch.no_grad():
        att.gamma.fill_(0.5)
    x = torch.randn(1, 16, 3, 5)
    flat = x.flatten(2)[0]  # (C, N)
    f = att.f.weight[:, :, 0, 0] @ flat + att.f.bias[:, None]
    g = att.g.weight[:, :, 0, 0] @ flat + att.g.bias[:, None]
    h = att.h.weight[:, :, 0, 0] @ flat + att.h.bias[:, None]
    s = f.T @ g  # (N, N): s_ij = f(x_i)^T g(x_j)
    beta = torch.exp(s) / torch.exp(s).sum(1, keepdim=True)
    o = h @ beta.T  # o_i = sum_j beta_ij h(x_j)
    want = 0.5 * o.view(1, 16, 3, 5) + x
    torch.testing.assert_close(att(x), want, rtol=1e-4, atol=1e-5)
    assert att.f.out_channels == 2  # C1 = C / 8


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_rcl_keeps_the_spatial_shape_for_every_t(steps):
    _, rcl = _parts()
    unit = rcl(5, 12, steps)
    out = unit(torch.randn(2, 5, 9, 7))
    assert out.shape == (2, 12, 9, 7)
    assert (out >= 0).all()  # ReLU then LRN keeps the sign


def test_rcl_shares_one_recurrent_kernel_and_unrolls_eq6():
    _, rcl = _parts()
    unit = rcl(3, 4, 2)
    assert sum(1 for _ in unit.parameters()) == 3  # w_f, b and the one shared w_r
    u = torch.randn(1, 3, 6, 6)
    fu = unit.feed(u)
    x = local_response_norm(torch.relu(fu))
    for _ in range(2):
        x = local_response_norm(torch.relu(fu + unit.recurrent(x)))
    torch.testing.assert_close(unit(u), x)


def test_the_network_maps_a_224_batch_to_224_maps_in_0_1():
    rng = np.random.default_rng(0)
    feats = _taps(rng, 2, size=224)
    for deep in (("s16",), ("s16", "s32")):
        net = ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, deep_taps=deep, widths=(2, 2, 4, 4),
                                rcl_steps=1)
        maps = arn_saliency(feats, net, batch_size=2)
        assert len(maps) == 2 and all(m.shape == (224, 224) for m in maps)
        assert all(m.min() >= 0 and m.max() <= 1 for m in maps)
        resized = arn_saliency(feats[:1], net, [(300, 400)])
        assert resized[0].shape == (300, 400)


def test_vgg16_side_outputs_fit_the_same_decoder():
    # VGG16's relu2_2, relu3_3, relu4_3, relu5_3 and pool5 (backbones/vgg.py) under the same stride names
    vgg = {"s2": 128, "s4": 256, "s8": 512, "s16": 512, "s32": 512}
    net = ArnNetwork.create(tap_channels=vgg, tap_strides=STRIDES, widths=(2, 2, 4, 4), rcl_steps=1, input_size=64)
    rng = np.random.default_rng(5)
    feats = [{t: rng.standard_normal((c, 64 // STRIDES[t], 64 // STRIDES[t])).astype(np.float16) for t, c in vgg.items()}]
    (m,) = arn_saliency(feats, net, [(50, 70)])
    assert m.shape == (50, 70) and 0 <= m.min() and m.max() <= 1
    assert net.hparams["tap_channels"] == [128, 256, 512, 512, 512]


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    import torch.nn.functional as F

    from promote import _taps as taps_mod

    rng = np.random.default_rng(1)
    masks = np.zeros((4, 64, 64), bool)
    for i in range(4):
        y, x = rng.integers(8, 32, 2)
        masks[i, y:y + 24, x:x + 24] = True
    feats = _taps(rng, 4, blob=masks)
    net = ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, widths=(4, 4, 8, 8), input_size=64)
    tensors = taps_mod.feature_tensors(feats, net.hparams)
    y = torch.from_numpy(masks.astype(np.float32))[:, None]
    opt = torch.optim.Adam(net.module.parameters(), lr=1e-3)

    def loss():
        return F.binary_cross_entropy_with_logits(net.logits(tensors), y)

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        assert float(loss()) < float(before)


def test_training_learns_a_separable_problem_and_keeps_the_best_validated_epoch():
    rng = np.random.default_rng(2)
    masks = np.zeros((9, 64, 64), bool)
    for i in range(9):
        y, x = rng.integers(4, 36, 2)
        masks[i, y:y + 24, x:x + 24] = True
    feats = _taps(rng, 9, blob=masks)
    res = train_arn(feats[:6], list(masks[:6]), tap_strides=STRIDES, input_size=64, widths=(4, 4, 8, 8),
                    rcl_steps=1, epochs=8, batch_size=3, learning_rate=1e-2, standardize=False, val_features=feats[6:],
                    val_masks=list(masks[6:]))
    assert res.losses[-1] < res.losses[0] * 0.6
    assert len(res.val_mae) == 8 and res.best_epoch == int(np.argmin(res.val_mae)) + 1
    maps = arn_saliency(feats[6:], res.network)
    mae = float(np.mean([np.abs(m - k).mean() for m, k in zip(maps, masks[6:])]))
    assert mae == pytest.approx(min(res.val_mae), abs=1e-4)  # the kept weights are the best epoch's
    assert mae < 0.15  # the unseen squares are found (all-background would be ~0.14 + blur)
    assert all((m[k].mean() > m[~k].mean() + 0.3) for m, k in zip(maps, masks[6:]))


def test_tap_statistics_standardise_every_channel_and_travel_with_the_model():
    from detect.arn import set_tap_statistics
    from promote import _taps as taps_mod

    rng = np.random.default_rng(4)
    feats = _taps(rng, 3)
    for f in feats:
        f["s8"] = (f["s8"].astype(np.float32) * 7 + 5).astype(np.float16)
    net = ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, widths=(4, 4, 8, 8), input_size=64)
    set_tap_statistics(net, feats)
    m = net.module
    i = net.hparams["taps"].index("s8")
    x = taps_mod.feature_tensors(feats, net.hparams)[i]
    z = (x - getattr(m, f"tap_mean{i}")[:, None, None]) / getattr(m, f"tap_scale{i}")[:, None, None]
    np.testing.assert_allclose(z.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-3)
    np.testing.assert_allclose(z.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-3)
    again = ArnNetwork.from_state(net.state_arrays(), net.hparams)
    np.testing.assert_array_equal(arn_saliency(feats, net)[0], arn_saliency(feats, again)[0])


def test_the_model_round_trips_through_its_arrays():
    rng = np.random.default_rng(3)
    feats = _taps(rng, 2)
    net = ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, deep_taps=("s16", "s32"),
                            widths=(4, 4, 8, 8), rcl_steps=None, attention=False, input_size=64, seed=5)
    again = ArnNetwork.from_state(net.state_arrays(), net.hparams)
    np.testing.assert_array_equal(arn_saliency(feats, net)[1], arn_saliency(feats, again)[1])


@pytest.mark.parametrize("kwargs, match", [
    ({"side_taps": ("s2", "s8", "s16")}, "strides s, 2s, 4s"),
    ({"deep_taps": ("s32",)}, "finest at stride 16"),
    ({"side_taps": ("s2", "s4", "x")}, "not among"),
    ({"widths": (4, 4, 8)}, "four positive"),
    ({"rcl_steps": -1}, "rcl_steps"),
])
def test_bad_network_shapes_are_refused_with_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, **kwargs)


def test_taps_of_the_wrong_size_are_refused():
    net = ArnNetwork.create(tap_channels=CHANNELS, tap_strides=STRIDES, widths=(4, 4, 8, 8))
    feats = _taps(np.random.default_rng(0), 1, size=64)  # the network expects 224
    with pytest.raises(ValueError, match="s2"):
        arn_saliency(feats, net)

