"""Pooling padded differently per side (TensorFlow's SAME, ONNX's begin/end pads): MaxPool2D
and AvgPool2D (count_include_pad=False) on the numpy, cpu and cuda backends against naive
loops, backward against float64 finite differences, the config round trip."""

import numpy as np
import pytest
from cuda_support import cuda_backend

import minicnn as mc
from minicnn import layers as L
from minicnn.gradcheck import check_layer, kinkless_input

# (kernel, stride, (top, left, bottom, right), ceil_mode, x shape)
CASES = [(3, 2, (0, 0, 1, 1), False, (2, 2, 8, 8)),     # SAME_UPPER on an even input
         (3, 2, (1, 1, 0, 0), True, (1, 3, 7, 6)),      # SAME_LOWER, ceil mode
         ((2, 3), (2, 1), (1, 0, 0, 1), False, (2, 2, 5, 7))]


def naive(x, k, s, pads, ceil, kind):
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = L.pair(k), L.pair(s), pads
    N, C, H, W = x.shape

    def count(size, k, s, b, e):
        span = size + b + e - k
        out = (-(-span // s) if ceil else span // s) + 1
        return out - 1 if ceil and (out - 1) * s >= size + b else out

    oh, ow = count(H, kh, sh, pt, pb), count(W, kw, sw, pl, pr)
    y = np.empty((N, C, oh, ow))
    for p in range(oh):
        for q in range(ow):
            h0, w0 = p * sh - pt, q * sw - pl
            win = x[:, :, max(h0, 0):min(h0 + kh, H), max(w0, 0):min(w0 + kw, W)]
            y[:, :, p, q] = win.max(axis=(2, 3)) if kind is L.MaxPool2D else win.mean(axis=(2, 3))
    return y


def make(kind, k, s, pads, ceil):
    extra = {"count_include_pad": False} if kind is L.AvgPool2D else {}
    return kind(k, s, padding=pads, ceil_mode=ceil, **extra)


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
@pytest.mark.parametrize("kind", [L.MaxPool2D, L.AvgPool2D])
@pytest.mark.parametrize("case", CASES)
def test_pool_padded_per_side_equals_naive(case, kind, backend, rng):
    k, s, pads, ceil, shape = case
    if backend == "cuda":
        cuda_backend()
    else:
        mc.set_backend(backend)
    layer = make(kind, k, s, pads, ceil)
    x = rng.standard_normal(shape)
    y = mc.to_numpy(layer.forward(mc.asarray(x)))
    expected = naive(x, k, s, pads, ceil, kind)
    assert y.shape[1:] == layer.output_shape(shape[1:])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", [L.MaxPool2D, L.AvgPool2D])
@pytest.mark.parametrize("case", CASES)
def test_pool_padded_per_side_gradcheck(case, kind):
    k, s, pads, ceil, shape = case
    result = check_layer(make(kind, k, s, pads, ceil), kinkless_input(shape, np.random.default_rng(2)),
                         mode="exhaustive")
    assert result.passed(1e-7), result.table()


def test_config_round_trip_and_refusals(tmp_path):
    net = mc.Sequential([L.MaxPool2D(3, 2, padding=(0, 0, 1, 1)), L.AvgPool2D(3, 1, padding=1)],
                        input_shape=(2, 8, 8))
    net.save(tmp_path / "p.npz")
    back = mc.Sequential.load(tmp_path / "p.npz")
    assert back.layers[0].pads == (0, 0, 1, 1) and back.layers[1].config() == net.layers[1].config()
    assert net.layers[1].config()["padding"] == [1, 1]  # as before padding per side existed
    with pytest.raises(ValueError, match="count_include_pad=False"):
        L.AvgPool2D(3, 2, padding=(0, 0, 1, 1))
    with pytest.raises(ValueError, match="half the kernel"):
        L.MaxPool2D(3, 2, padding=(0, 0, 2, 1))
